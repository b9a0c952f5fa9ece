"""Eyelids on a photo: blinks and eye openness.

A photo avatar that never blinks stares. `Blinks` schedules seeded blinks by frame index (a
frame dropped before it is shown moves nothing), `paint_blink` closes the lids of a sharp,
full-resolution photo by painting lid skin over the eyes (shut, with the relief of real shut
eyes: `shut_relief`, a map in each eye's own coordinates, `eye_axes`), and `blink_map` closes
them by a per-column remap (the photo training clips' way, at crop resolution).
"""

from __future__ import annotations

import bisect
import functools
import logging

import numpy as np
from scipy import ndimage

from rtavatar.assets import ASSETS_DIR
from rtavatar.photo.landmarks import BROWS, EYE_LEFT_START, EYE_RIGHT_START, smoothstep
from rtavatar.photo.options import DEFAULT_BLINKS

log = logging.getLogger(__name__)
SHUT_EYE = ASSETS_DIR / "eyes" / "shut_eye.safetensors"

RELIEF = 2.5  # the shut-eye relief's dark side (lash line, fold) x this: its median over real blinks is softened by misalignment
RELIEF_BRIGHT = 1.0  # its bright side (the lid's highlight) x this (x2 is a glowing band on a sharp photo)
GRAIN_SIGMA, GRAIN_CLIP = 1.5, 6.0  # px, levels: the skin grain laid on a painted lid (finer than this blur, at most this strong)
# The shut-eye relief map's grid, in eye coordinates: x from the outer corner (0) to the inner
# one (1), y down, both in eye widths (u0, u1, v0, v1), and its (rows, columns).
EYE_GRID = (-0.5, 1.5, -0.8, 0.8)
EYE_GRID_SHAPE = (52, 64)
SHARPEN_MAX = 3.0  # the relief's dark side narrowed at most sqrt(this) on a large eye (`sharpened`)


def eye_axes(pts: np.ndarray, left: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An eye's frame: its outer corner, the x axis (to the inner corner) and the y axis (the
    x axis turned a right angle, pointing down the image); `left` is the image-left eye. The
    image-right eye's x runs right to left: a map in these coordinates is mirrored for it."""
    outer, inner = (pts[EYE_LEFT_START], pts[EYE_LEFT_START + 3]) if left else (pts[EYE_RIGHT_START + 3], pts[EYE_RIGHT_START])
    x = np.asarray(inner, np.float64) - outer
    y = np.array([-x[1], x[0]])
    return np.asarray(outer, np.float64), x, (y if y[1] >= 0 else -y)


@functools.lru_cache(maxsize=1)
def shut_relief() -> np.ndarray | None:
    """The shut-eye relief map on EYE_GRID (scripts/eye_template.py: real blinks of GRID's s1,
    luminance over its own blur), or None if the package lacks it (blinks keep a drawn lash line)."""
    if not SHUT_EYE.is_file():
        log.warning("%s is missing: blinks are drawn without it", SHUT_EYE)
        return None
    from safetensors.numpy import load_file

    return load_file(str(SHUT_EYE))["relief"]


def sharpened(d: np.ndarray, eye_w: float) -> np.ndarray:
    """The relief's dark side (`d` < 0, image rows x columns) narrowed for an eye `eye_w` px
    wide: a map of EYE_GRID_SHAPE[1] / 2 cells an eye width is blurred when enlarged past that,
    so each column's dips are raised to a power, relative to the column's deepest (a Gaussian
    dip x^p is sqrt(p) narrower at the same depth: the lash line keeps its depth and length),
    growing with the enlargement up to SHARPEN_MAX; the faint dips (the socket's rim) fade with
    it. At video scale (an eye at most that many pixels wide) the map is as measured."""
    p = float(np.clip(eye_w / (EYE_GRID_SHAPE[1] / (EYE_GRID[1] - EYE_GRID[0])), 1.0, SHARPEN_MAX))
    if p <= 1.0:
        return d
    deepest = np.minimum(d.min(axis=0, keepdims=True), -1e-6)
    return np.where(d < 0, deepest * np.clip(d / deepest, 0, 1) ** p, d)


def relief_at(relief: np.ndarray, pts: np.ndarray, left: bool, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The relief map (on EYE_GRID) at image pixels (rows, cols), 1 outside the grid."""
    o, x, y = eye_axes(pts, left)
    inv = np.linalg.inv(np.stack([x, y], 1))  # image offset -> (u, v)
    u = inv[0, 0] * (cols - o[0]) + inv[0, 1] * (rows - o[1])
    v = inv[1, 0] * (cols - o[0]) + inv[1, 1] * (rows - o[1])
    (u0, u1, v0, v1), (gh, gw) = EYE_GRID, relief.shape
    return ndimage.map_coordinates(relief, [(v - v0) / (v1 - v0) * (gh - 1), (u - u0) / (u1 - u0) * (gw - 1)],
                                   order=1, mode="constant", cval=1.0)


def eye_frame(pts: np.ndarray, left: bool, grid: tuple[float, float, float, float] = EYE_GRID,
              shape: tuple[int, int] = EYE_GRID_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """The image (rows, columns), each `shape`, of the eye grid's points."""
    o, x, y = eye_axes(pts, left)
    v, u = np.meshgrid(np.linspace(grid[2], grid[3], shape[0]), np.linspace(grid[0], grid[1], shape[1]), indexing="ij")
    return o[1] + u * x[1] + v * y[1], o[0] + u * x[0] + v * y[0]


class Blinks:
    """Seeded blinks, `per_minute` on average (gamma-distributed gaps), as a lid closure (0..1)
    per frame index: 80 ms closing, 120 ms shut, 160 ms opening (360 ms in all, within a person's
    250-400 ms; a full closure of 3-4 frames at 25 fps, so a landmark detector that misses one
    frame still sees the eye shut). The schedule is a function of
    the index alone, drawn lazily in order, so it does not depend on how frames are batched or
    on frames dropped before they were shown."""

    DURATION = 0.36  # s, a whole blink

    def __init__(self, per_minute: float = DEFAULT_BLINKS, seed: int = 0, fps: float = 25.0) -> None:
        self.per_minute, self.fps = per_minute, fps
        self.rng = np.random.default_rng(seed)
        self.onsets: list[float] = [self._gap() * 0.5] if per_minute > 0 else []

    def _gap(self) -> float:
        """Frames from one blink's end to the next one's start: onset to onset is 60 / per_minute s on average."""
        mean = max(60.0 / max(self.per_minute, 1e-6) - self.DURATION, 0.1)
        return float(self.rng.gamma(2.0, mean / 2.0)) * self.fps

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
        return float(min(t / 0.08, 1.0, max(0.0, 1 - (t - 0.2) / 0.16)))


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
    few rows of lid into streaks; instead each column of the eye is filled, from above the
    upper lid down to where the closure puts the lid's edge, with the skin the column has just
    above and just below the eye, blended between the two, so the painted lid meets the skin
    around it without a seam (an outline left around the eye is what a landmark detector reads
    as an open eye), with the grain of the skin under the eye. While the lid falls a dark lash
    line, an arc from corner to corner, is drawn along its edge; nearly shut, the lid takes the
    relief of a real shut eye instead (`shut_relief`: lash line, lid fold, lower rim), which
    dlib, as a person, reads as shut where the drawn line read as a narrowed open eye.
    """
    out = image.astype(np.float32).copy()
    src = out.copy()
    h, width = out.shape[:2]
    yy = np.arange(h, dtype=np.float32)[:, None]
    for base, c in zip((EYE_LEFT_START, EYE_RIGHT_START), closure):
        if c <= 1e-3:
            continue
        c = min(c, 1.0)
        e = pts[base : base + 6]
        eye_w = e[3, 0] - e[0, 0]
        x0, x1 = max(int(np.floor(e[0, 0] - 0.25 * eye_w)), 0), min(int(np.ceil(e[3, 0] + 0.25 * eye_w)) + 1, width)
        if x1 - x0 < 3 or eye_w < 2:
            continue
        xs = np.arange(x0, x1, dtype=np.float64)
        up = lid_curve(pts, (base, base + 1, base + 2, base + 3), xs)
        lo = lid_curve(pts, (base, base + 5, base + 4, base + 3), xs)
        g = max(float(np.max(lo - up)), 2.0)
        t = np.clip((xs - e[0, 0]) / eye_w, -0.25, 1.25)  # along the eye, corner to corner
        fade = smoothstep(np.clip(np.minimum(t, 1 - t) / 0.25 + 1, 0, 1)).astype(np.float32)
        mid = np.clip(t, 0, 1)
        brow = lid_curve(pts, tuple(range(17, 22)) if base == EYE_LEFT_START else tuple(range(22, 27)), xs)
        # From halfway up to the brow (above the socket's crease, where a shut lid's skin is as
        # light as under the brow), fading in: no outline of the eye or its crease is left.
        top = np.minimum(brow + 0.5 * (np.minimum(up, lo) - brow), np.minimum(up, lo) - 0.5 * g)
        bottom = np.maximum(lo, up) + 0.3 * g  # below the lower lid's rim
        # The shut eye's lash line: an arc from corner to corner, sagging to 85 % of the eye's height.
        corner = e[0, 1] + (e[3, 1] - e[0, 1]) * mid
        sag = (np.mean(lo) * 0.85 + np.mean(up) * 0.15 - (e[0, 1] + e[3, 1]) / 2) * 4 * mid * (1 - mid)
        shut = corner + sag - 0.05 * g
        edge = (top + c * (shut + 0.05 * g - top)).astype(np.float32)

        # The skin at the fill's two ends, per column: a few rows averaged, smoothed along the eye.
        def ring(rows: np.ndarray, sign: int) -> np.ndarray:
            k = max(int(round(0.15 * g)), 1)
            r = np.clip(np.round(rows)[None] + sign * np.arange(1, k + 1)[:, None], 0, h - 1).astype(int)
            cols = src[r, np.arange(x0, x1)[None]].mean(0)
            n = max(3, (x1 - x0) // 6) | 1
            pad = np.pad(cols, ((n // 2, n // 2), (0, 0)), mode="edge")
            return np.stack([np.convolve(pad[:, ch], np.ones(n) / n, mode="valid") for ch in range(3)], 1)

        a, b = ring(top, -1), ring(bottom, 1)
        # A shut lid catches the light: where the skin above is darker (the brow's shadow) than
        # below, its colour is the skin below's (a dark lid reads as an open eye, to dlib too).
        la, lb = a.mean(1, keepdims=True), b.mean(1, keepdims=True)
        w = np.clip((lb - la) / np.maximum(0.1 * lb, 1e-3), 0, 1)[:, 0]
        w = ndimage.uniform_filter1d(w, max(3, (x1 - x0) // 3), mode="nearest")[:, None]  # no streaks where one column's skin is a hair
        a = a + w * (b - a)
        topf, botf = top.astype(np.float32)[None], bottom.astype(np.float32)[None]
        u = np.clip((yy - topf) / np.maximum(botf - topf, 1.0), 0, 1)[..., None]
        lid = a[None] * (1 - 0.35 * u) + b[None] * 0.35 * u
        soft = max(float(np.mean(up - top)) * 0.5, 1.0)  # the fill fades in from its top over this many rows
        cov = smoothstep(np.clip((yy - topf) / soft, 0, 1)) * np.clip(edge[None] - yy + 0.5, 0, 1) * fade[None]
        # Shut: the lower lid's skin under the lash line too (a shut eye shows no eye below its lashes).
        low = float(np.clip((c - 0.8) / 0.2, 0, 1))
        if low > 0:
            cov = np.maximum(cov, low * np.clip(yy - edge[None] + 0.5, 0, 1) * np.clip(botf - yy + 0.5, 0, 1) * fade[None])
        # Shutting: the relief of a real shut eye (lash line, lid fold, lower rim) replaces the drawn lash line.
        relief = shut_relief()
        s = float(smoothstep(np.clip((c - 0.5) / 0.5, 0, 1))) * RELIEF if relief is not None else 0.0
        if s > 0:
            rr, cc = np.meshgrid(np.arange(h, dtype=np.float64), xs, indexing="ij")
            d = sharpened(relief_at(relief, pts, base == EYE_LEFT_START, rr, cc) - 1, eye_w)
            lid = lid * (1 + np.where(d < 0, s, min(s, 1.0) * RELIEF_BRIGHT) * d)[..., None].astype(np.float32)
        lash_w = max(1.0, 0.15 * g)  # a soft line of lashes, not a drawn stroke
        inner = np.clip(np.minimum(t, 1 - t) / 0.08 + 1, 0, 1).astype(np.float32)
        lash = np.exp(-0.5 * ((yy - edge[None]) / lash_w) ** 2) * min(1.0, 2 * c) * inner[None]
        lid = lid * (1 - 0.55 * (1 - min(s, 1.0)) * lash[..., None])
        cov = np.maximum(cov, lash * fade[None])
        # The skin's grain (a flat fill is a smudge on a sharp photo): the fine detail of the skin
        # under the eye, clipped (grain, not its lashes or creases), moved up over the lid.
        fine = np.clip(src[:, x0:x1] - ndimage.gaussian_filter(src[:, x0:x1], (GRAIN_SIGMA, GRAIN_SIGMA, 0)), -GRAIN_CLIP, GRAIN_CLIP)
        lid = lid + fine[np.clip(np.arange(h) + int(round(float(np.mean(bottom - top)))), 0, h - 1)]
        region = out[:, x0:x1]
        region += cov[..., None] * (lid - region)
    return out
