"""Eyelids on a photo: blinks and eye openness.

A photo avatar that never blinks stares. `Blinks` schedules seeded blinks by frame index (a
frame dropped before it is shown moves nothing), `paint_blink` closes the lids of a sharp,
full-resolution photo by painting lid skin over the eyes, and `blink_map` closes them by a
per-column remap (the photo training clips' way, at crop resolution).
"""

from __future__ import annotations

import bisect

import numpy as np

from rtavatar.photo.landmarks import BROWS, EYE_LEFT_START, EYE_RIGHT_START, smoothstep


class Blinks:
    """Seeded blinks, `per_minute` on average (gamma-distributed gaps), as a lid closure (0..1)
    per frame index: 80 ms closing, 40 ms shut, 160 ms opening. The schedule is a function of
    the index alone, drawn lazily in order, so it does not depend on how frames are batched or
    on frames dropped before they were shown."""

    DURATION = 0.28  # s, a whole blink

    def __init__(self, per_minute: float = 15.0, seed: int = 0, fps: float = 25.0) -> None:
        self.per_minute, self.fps = per_minute, fps
        self.rng = np.random.default_rng(seed)
        self.onsets: list[float] = [self._gap() * 0.5] if per_minute > 0 else []

    def _gap(self) -> float:
        return float(self.rng.gamma(2.0, 60.0 / max(self.per_minute, 1e-6) / 2.0)) * self.fps  # frames

    def _end(self, onset: float) -> int:
        """The first frame after the blink that starts at `onset`."""
        f = int(np.ceil(onset))
        while (f - onset) / self.fps <= self.DURATION:
            f += 1
        return f

    def __call__(self, index: int) -> float:
        if self.per_minute <= 0:
            return 0.0
        while (end := self._end(self.onsets[-1])) <= index:  # the next blink starts a gap after this one ends
            self.onsets.append(end + self._gap())
        j = bisect.bisect_right(self.onsets, index) - 1
        if j < 0:
            return 0.0
        t = (index - self.onsets[j]) / self.fps
        if t > self.DURATION:
            return 0.0
        return float(min(t / 0.08, 1.0, max(0.0, 1 - (t - 0.12) / 0.16)))


def lid_curve(pts: np.ndarray, idx: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    q = pts[list(idx)]
    order = np.argsort(q[:, 0])
    return np.interp(x, q[order, 0], q[order, 1])


def blink_map(pts: np.ndarray, closure: tuple[float, float], size: int | tuple[int, int]) -> np.ndarray | None:
    """(H, W) source row of each output pixel that closes the eyelids, or None if open.

    A spline cannot shut an eye (the lids would meet: its fit rings over the brows), so the
    lids move by a per-column vertical remap of the eye region instead: the skin above the
    upper lid stretches down over the eye (80 % of the way), the lower lid rises (20 %), and
    the eye between them is squeezed into the lash line.
    """
    if max(abs(c) for c in closure) < 1e-3:
        return None
    h, width = (size, size) if isinstance(size, int) else size
    y = np.arange(h, dtype=np.float64)[:, None] + np.zeros((1, width))
    src = y.copy()
    for base, c in zip((EYE_LEFT_START, EYE_RIGHT_START), closure):
        if abs(c) < 1e-3:
            continue
        e = pts[base : base + 6]
        eye_w = e[3, 0] - e[0, 0]
        xs = np.arange(width, dtype=np.float64)
        up = lid_curve(pts, (base, base + 1, base + 2, base + 3), xs)
        lo = lid_curve(pts, (base, base + 5, base + 4, base + 3), xs)
        gap = np.maximum(lo - up, 0.0)
        # dlib's lid points sit inside the lashes: the lid margins are a little outside them.
        up, lo = up - 0.4 * gap, lo + 0.15 * gap
        gap = lo - up
        top = pts[BROWS, 1].max() * 0.5 + up * 0.5  # halfway to the brows
        bottom = lo + 0.8 * (lo - top) * 0.5
        up2, lo2 = up + 0.8 * c * gap, lo - 0.2 * c * gap
        # Inverse piecewise-linear map per column: output knots -> source knots.
        ends = (np.full(width, -1.0), np.full(width, float(h)))
        out_k = np.stack([ends[0], top, up2, lo2, bottom, ends[1]])
        src_k = np.stack([ends[0], top, up, lo, bottom, ends[1]])
        u = np.clip(np.minimum(xs - (e[0, 0] - 0.2 * eye_w), (e[3, 0] + 0.2 * eye_w) - xs) / (0.35 * eye_w), 0, 1)
        u = smoothstep(u)
        for j in np.flatnonzero(u > 0):
            src[:, j] += u[j] * (np.interp(y[:, j], out_k[:, j], src_k[:, j]) - y[:, j])
    return src


def paint_blink(image: np.ndarray, pts: np.ndarray, closure: tuple[float, float]) -> np.ndarray:
    """Close the eyelids of a photo (float (H, W, 3) copy) by painting lid skin over the eyes.

    For sharp, full-resolution photos (the engine's photo composite) a remap would stretch a
    few rows of lid into streaks; instead each column's lid colour is taken from the skin just
    above the lid margin, shaded toward a dark lash line, and drawn down to where the closure
    puts the lid's edge.
    """
    out = image.astype(np.float32).copy()
    h, width = out.shape[:2]
    yy = np.arange(h, dtype=np.float32)[:, None]
    for base, c in zip((EYE_LEFT_START, EYE_RIGHT_START), closure):
        if c <= 1e-3:
            continue
        e = pts[base : base + 6]
        x0, x1 = int(np.floor(e[0, 0])), int(np.ceil(e[3, 0])) + 1
        x0, x1 = max(x0, 0), min(x1, width)
        if x1 - x0 < 3:
            continue
        xs = np.arange(x0, x1, dtype=np.float64)
        up = lid_curve(pts, (base, base + 1, base + 2, base + 3), xs)
        lo = lid_curve(pts, (base, base + 5, base + 4, base + 3), xs)
        gap = np.maximum(lo - up, 0.0)
        up_m, lo_m = up - 0.3 * gap, lo + 0.1 * gap  # the lid margins (dlib's points sit inside the lashes)
        edge = (up_m + min(c, 1.0) * (lo_m - up_m)).astype(np.float32)
        # Lid colour: the skin band above the margin, per column, smoothed along the lid.
        r0 = np.clip(np.round(up_m - 0.6 * gap.max() - 2), 0, h - 1).astype(int)
        r1 = np.clip(np.round(up_m - 1), 1, h).astype(int)
        cols = np.stack([out[a:max(b, a + 1), x0 + j].mean(0) for j, (a, b) in enumerate(zip(r0, r1))])
        k = max(3, (x1 - x0) // 6) | 1
        pad = np.pad(cols, ((k // 2, k // 2), (0, 0)), mode="edge")
        cols = np.stack([np.convolve(pad[:, ch], np.ones(k) / k, mode="valid") for ch in range(3)], 1)
        top = up_m.astype(np.float32)[None]
        cov = np.clip(yy - top + 0.5, 0, 1) * np.clip(edge[None] - yy + 0.5, 0, 1)
        depth = np.clip((yy - top) / np.maximum(edge[None] - top, 1.0), 0, 1)
        lid = cols[None] * (1.0 - 0.12 * depth[..., None])
        lash_w = np.maximum(1.0, 0.12 * gap.astype(np.float32))[None]
        lash = np.clip(1 - np.abs(yy - edge[None]) / lash_w, 0, 1) * min(1.0, 2 * c)
        lid = lid * (1 - 0.6 * lash[..., None])
        cov = np.maximum(cov, lash * (np.abs(yy - edge[None]) < lash_w))
        region = out[:, x0:x1]
        region += cov[..., None] * (lid - region)
    return out

