"""Landmark-driven animation of a real face photo.

Used by `synth-data --portraits` (photo-mode clips with the same ground truth as the
procedural faces) and by the engine's photo path (blinks on the sharp photo). It depends on
numpy and torch only, so the inference layer may import it.

A photo's 68 dlib landmarks are moved to where a `FaceState`-like set of values puts them:
the inner lips part by `mouth_open` inter-ocular distances (IOD; 40 % up / 60 % down, as the
procedural renderer), the jaw follows the lower lip, the corners widen, round and lift
(smile), the eyelids close, the brows rise, features shift with yaw / pitch by their depth,
and the head rolls about the neck. The photo is then resampled through a thin-plate spline
fitted to those moves (a backward map: output pixel -> photo pixel), with fixed anchors on
the crop border and a ring around the head that follows only the head pose. The mouth
interior a closed-mouth photo does not have is drawn inside the moved inner-lip contour: a
dark cavity, upper teeth and a tongue, lit like the face around it. Lips a photo shows
parted (a smile over teeth) are closed and opened by `PartedLips` in the engine's paste,
which keeps the photo's own teeth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from rtavatar.data.face import width_factor

# Depth of each landmark for yaw / pitch parallax, in IOD (the jaw outline barely moves, the
# nose tip most): a 2-D warp cannot turn a head, but parallax between features reads as a turn.
_DEPTH = np.concatenate([
    0.4 * (1 - np.abs(np.arange(17) - 8) / 8),  # jaw 0-16
    np.full(10, 0.55),  # brows 17-26
    np.array([0.7, 0.8, 0.9, 1.0, 0.85, 0.85, 0.9, 0.85, 0.85]),  # nose 27-35
    np.full(12, 0.5),  # eyes 36-47
    np.full(20, 0.7),  # lips 48-67
])
# How much of the lower lip's drop each jaw point follows (the chin most).
_JAW_FOLLOW = {4: 0.15, 5: 0.35, 6: 0.6, 7: 0.85, 8: 1.0, 9: 0.85, 10: 0.6, 11: 0.35, 12: 0.15}
_INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points, image left to right
_UPPER_OUTER, _LOWER_OUTER = (49, 50, 51, 52, 53), (59, 58, 57, 56, 55)
# Colours of the drawn mouth interior (0..1 RGB before lighting).
CAVITY, TEETH, TONGUE = (0.22, 0.05, 0.06), (0.93, 0.92, 0.86), (0.72, 0.30, 0.32)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Interior:
    """How `draw_mouth_interior` paints an open mouth. Sizes are shares of the inner-lip gap
    (teeth also capped in IOD); `teeth_span` is the share of the mouth's width the upper teeth
    cover (1: corner to corner), `tongue_lift` how far above the lower lip the tongue's centre
    sits, `shade` how much darker the cavity is at its centre than at its rim."""

    cavity: tuple[float, float, float] = CAVITY
    teeth: tuple[float, float, float] = TEETH
    tongue: tuple[float, float, float] = TONGUE
    teeth_height: float = 0.3
    teeth_max_iod: float = 0.054
    teeth_span: float = 1.0
    tongue_lift: float = 0.1
    tongue_height: float = 0.35
    tongue_alpha: float = 0.8
    shade: float = 0.0


# The photo training clips' interior (the shipped models learned it; kept as it was made).
CLIP_INTERIOR = Interior()
# The full-resolution paste's (engine/portrait.LipWarpPaste): at a photo's own resolution the
# clips' interior reads as drawn -- a white band corner to corner, and a lip-pink tongue high in
# the mouth that dlib (and the eye) takes for the lower lip, so a wider opening read as a
# narrower one. Here the teeth are shaded and end before the corners, the tongue is darker and
# lies low, and the cavity darkens towards its centre.
PHOTO_INTERIOR = Interior(cavity=(0.2, 0.06, 0.07), teeth=(0.8, 0.76, 0.7), tongue=(0.5, 0.2, 0.22), teeth_height=0.28,
                          teeth_max_iod=0.06, teeth_span=0.7, tongue_lift=-0.15, tongue_height=0.3, tongue_alpha=0.7,
                          shade=0.45)


@dataclass
class Pose:
    """What the warp animates; the units of docs/DATA.md (see `data.face.FaceState`)."""

    mouth_open: float = 0.0  # inner-lip gap / IOD (absolute: a photo with parted lips can close)
    mouth_width: float = 0.0
    mouth_round: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    eye_open_l: float = 1.0
    eye_open_r: float = 1.0
    blink: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    breath: float = 0.0


def _frame(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Eye midpoint, unit eye-line axis, unit down axis and IOD of (68, 2) landmarks."""
    le, re_ = pts[36:42].mean(0), pts[42:48].mean(0)
    d = re_ - le
    iod = float(np.linalg.norm(d))
    e = d / max(iod, 1e-6)
    return (le + re_) / 2, e, np.array([-e[1], e[0]]), iod


def target_landmarks(pts: np.ndarray, p: Pose, open_mouth: bool = True) -> np.ndarray:
    """Where `p` moves the photo's (68, 2) landmarks (pixels); `open_mouth=False` leaves the
    lips' opening (and the jaw) as they are and moves only width, smile, brows and pose."""
    m, e, n, iod = _frame(pts)
    L = np.stack([(pts - m) @ e, (pts - m) @ n], 1) / iod  # face frame, IOD units, y down
    T = L.copy()
    c = (L[48] + L[54]) / 2
    w0 = max((L[54, 0] - L[48, 0]) / 2, 1e-3)
    # Width: relative change, rounding narrows, smiling widens (the renderer's formula).
    k = width_factor(p.mouth_width, p.mouth_round, p.smile)
    T[48:68, 0] = c[0] + (L[48:68, 0] - c[0]) * k
    t = np.clip((L[48:68, 0] - c[0]) / w0, -1.2, 1.2)
    T[48:68, 1] -= p.smile * 0.09 * t * t  # corners rise on a smile, fall on a frown
    if open_mouth:
        _open(L, T, p, c, w0)
    T[17:27, 1] -= 0.08 * p.brow_raise
    if p.brow_raise < 0:  # a frown draws the inner brows down and together
        for i, s in ((20, 1), (21, 1), (22, -1), (23, -1)):
            T[i] += np.array([0.03 * s, 0.04]) * -p.brow_raise
    T = _pose(T, p, _DEPTH)
    return m + iod * (T[:, :1] * e + T[:, 1:] * n)


def _open(L: np.ndarray, T: np.ndarray, p: Pose, c: np.ndarray, w0: float) -> None:
    """Opening (in place on T): per inner column, the gap the lens-shaped profile asks for minus
    the photo's; the outer lips and the jaw follow."""
    cols, deltas = [-1.0], [0.0]
    for u, lo in _INNER_PAIRS:
        tc = float(np.clip((L[u, 0] - c[0]) / w0, -1, 1))
        want = p.mouth_open * (1 - tc * tc) ** 0.6
        d = want - max(L[lo, 1] - L[u, 1], 0.0)
        T[u, 1] -= 0.4 * d
        T[lo, 1] += 0.6 * d
        cols.append(tc)
        deltas.append(d)
    cols.append(1.0)
    deltas.append(0.0)
    order = np.argsort(cols)
    delta_at = lambda x: float(np.interp((x - c[0]) / w0, np.array(cols)[order], np.array(deltas)[order]))  # noqa: E731
    for i in _UPPER_OUTER:
        T[i, 1] -= 0.4 * delta_at(L[i, 0])
    for i in _LOWER_OUTER:
        T[i, 1] += 0.6 * delta_at(L[i, 0])
    drop = 0.6 * deltas[2]  # the centre column's lower-lip drop
    for i, f in _JAW_FOLLOW.items():
        T[i, 1] += f * drop


def eye_closure(p: Pose) -> tuple[float, float]:
    """Closure of the image-left and image-right eye (0 open, 1 shut, < 0 wider than the photo)."""
    return (1 - float(np.clip(p.eye_open_r * (1 - p.blink), 0.0, 1.4)),  # image left is the subject's right eye
            1 - float(np.clip(p.eye_open_l * (1 - p.blink), 0.0, 1.4)))


def _lid_curve(pts: np.ndarray, idx: tuple[int, ...], x: np.ndarray) -> np.ndarray:
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
    for base, c in zip((36, 42), closure):
        if abs(c) < 1e-3:
            continue
        e = pts[base : base + 6]
        eye_w = e[3, 0] - e[0, 0]
        xs = np.arange(width, dtype=np.float64)
        up = _lid_curve(pts, (base, base + 1, base + 2, base + 3), xs)
        lo = _lid_curve(pts, (base, base + 5, base + 4, base + 3), xs)
        gap = np.maximum(lo - up, 0.0)
        # dlib's lid points sit inside the lashes: the lid margins are a little outside them.
        up, lo = up - 0.4 * gap, lo + 0.15 * gap
        gap = lo - up
        top = pts[17:27, 1].max() * 0.5 + up * 0.5  # halfway to the brows
        bottom = lo + 0.8 * (lo - top) * 0.5
        up2, lo2 = up + 0.8 * c * gap, lo - 0.2 * c * gap
        # Inverse piecewise-linear map per column: output knots -> source knots.
        ends = (np.full(width, -1.0), np.full(width, float(h)))
        out_k = np.stack([ends[0], top, up2, lo2, bottom, ends[1]])
        src_k = np.stack([ends[0], top, up, lo, bottom, ends[1]])
        u = np.clip(np.minimum(xs - (e[0, 0] - 0.2 * eye_w), (e[3, 0] + 0.2 * eye_w) - xs) / (0.35 * eye_w), 0, 1)
        u = u * u * (3 - 2 * u)
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
    for base, c in zip((36, 42), closure):
        if c <= 1e-3:
            continue
        e = pts[base : base + 6]
        x0, x1 = int(np.floor(e[0, 0])), int(np.ceil(e[3, 0])) + 1
        x0, x1 = max(x0, 0), min(x1, width)
        if x1 - x0 < 3:
            continue
        xs = np.arange(x0, x1, dtype=np.float64)
        up = _lid_curve(pts, (base, base + 1, base + 2, base + 3), xs)
        lo = _lid_curve(pts, (base, base + 5, base + 4, base + 3), xs)
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


def _median(v: np.ndarray, k: int) -> np.ndarray:
    """A running median over `k` samples (edges repeated): one stray column does not move a contour."""
    if k < 3:
        return v
    pad = np.pad(v, k // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)[: len(v)]


def _box(v: np.ndarray, k: int) -> np.ndarray:
    """A running mean over `k` samples (edges repeated)."""
    if k < 2:
        return v
    return np.convolve(np.pad(v, k // 2, mode="edge"), np.ones(k) / k, mode="valid")[: len(v)]


def _ramp(y: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Rows y in [a0, a1) mapped linearly onto [b0, b1) (per column)."""
    return b0 + (y - a0) * (b1 - b0) / np.maximum(a1 - a0, 1e-6)


def _curve(pts: np.ndarray, idx: tuple[int, ...], x: np.ndarray, k: int) -> np.ndarray:
    """A lip contour through landmarks `idx` at columns `x`, box-smoothed over `k` columns."""
    return _box(_lid_curve(pts, idx, x), k)


class PartedLips:
    """Moves a photo's parted lips (a smile over teeth): `close(closure)` and `open(extra)`,
    each -> a float (H, W, 3) copy; `pts` are the photo's 68 landmarks in `image` pixels.

    `close`: closure 0 leaves the photo as it is, 1 shuts the lips. A spline cannot close
    them: the teeth between the lips would be squeezed into a white seam. Here, per column,
    the lips slide over what is between them, as lips do over teeth: the upper lip's inner edge
    comes down 40 % of the gap and the lower lip's up 60 %, each lip stretched over the way
    (its outer edge moves half as far), the skin above and the chin below follow; the teeth
    stay where they are and the lips cover them. Where they meet, a soft dark line (`seam`
    deep) is the lips' parting line.

    `open`: the jaw drops by `extra` IOD at the middle (a lens-shaped profile, 0 at the
    corners). The upper lip and the upper part of what the photo shows between the lips (the
    upper teeth) stay; the lower part (lower teeth) and the lower lip move down with the jaw,
    the chin follows, and a dark cavity opens between them. So the photo's own teeth stay in
    its mouth, where a spline would stretch them and a drawn interior paint over them.

    dlib's inner-lip points are a straight line from the inner corner to the next point, and a
    wide smile shows teeth outside it; so the gap is also read off the pixels: between the
    lips, per column, the rows that are less red than the lips (teeth) or much darker (the
    cavity), with the thresholds set halfway between this photo's own lip and interior colours.
    """

    def __init__(self, image: np.ndarray, pts: np.ndarray, seam: float = 0.3) -> None:
        self.image = np.asarray(image)
        self.pts = np.asarray(pts, np.float64)
        h, w = self.image.shape[:2]
        _, _, _, self.iod = _frame(self.pts)
        self.x0, self.x1 = max(int(np.floor(self.pts[48, 0])), 0), min(int(np.ceil(self.pts[54, 0])) + 1, w)
        self.seam = seam
        self.gap = np.zeros(max(self.x1 - self.x0, 0))
        self.cavity = self.tongue = np.asarray(PHOTO_INTERIOR.cavity, np.float32) * 255.0
        self.split = np.zeros(max(self.x1 - self.x0, 0))
        if self.x1 - self.x0 < 3:
            return
        xs = np.arange(self.x0, self.x1, dtype=np.float64)
        k = max(int(0.04 * self.iod), 1) | 1
        P = self.pts
        self.uo = _curve(P, (48, 49, 50, 51, 52, 53, 54), xs, k)
        ui = _curve(P, (48, 60, 61, 62, 63, 64, 54), xs, k)
        li = _curve(P, (48, 60, 67, 66, 65, 64, 54), xs, k)
        self.lo = _curve(P, (48, 59, 58, 57, 56, 55, 54), xs, k)
        inside = (xs >= P[60, 0]) & (xs <= P[64, 0])
        ui, li = self._from_pixels(xs, ui, li, inside, k)
        self.ui, self.li = ui, li
        self.gap = np.maximum(li - ui, 0.0)
        self.gap[self.gap < 1.0] = 0.0
        self.top = (P[33, 1] + self.uo) / 2
        self.bottom = self.lo + 0.8 * max(P[8, 1] - self.lo.max(), 1.0)
        light = face_light(self.image, P) * 255.0
        self.cavity = np.asarray(PHOTO_INTERIOR.cavity, np.float32) * light
        self.tongue = np.asarray(PHOTO_INTERIOR.tongue, np.float32) * light
        self.split = self._occlusal_line(k)

    def _from_pixels(self, xs: np.ndarray, ui: np.ndarray, li: np.ndarray, inside: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
        img = self.image.astype(np.float32)
        h = img.shape[0]
        y0, y1 = max(int(self.uo.min()) - 1, 0), min(int(np.ceil(self.lo.max())) + 2, h)
        band = img[y0:y1, self.x0 : self.x1]
        red = (band[..., 0] - band[..., 1]) / (band.sum(-1) + 1.0)
        lum = band @ _LUMA
        y = np.arange(y0, y1, dtype=np.float64)[:, None]
        lips = ((y >= self.uo) & (y < ui)) | ((y > li) & (y <= self.lo))
        between = (y >= ui) & (y <= li) & inside[None]
        if lips.sum() < 20 or between.sum() < 20:
            return ui, li
        lip_red, lip_lum = float(np.median(red[lips])), float(np.median(lum[lips]))
        int_red = float(np.median(red[between]))
        if lip_red - int_red < 0.03:  # lips no redder than the gap: trust the landmarks
            return ui, li
        interior = (red < (lip_red + int_red) / 2) | (lum < 0.6 * lip_lum)
        # Only the lips' inner parts may be gap: not their outer edges, nor the skin beyond.
        window = (y >= self.uo + 0.3 * np.maximum(ui - self.uo, 0)) & (y <= self.lo - 0.3 * np.maximum(self.lo - li, 0))
        interior &= window
        top, bot = ui.copy(), li.copy()
        n = interior.shape[0]
        for j in range(len(xs)):
            # The run of gap rows through the middle of the lips (a lip's highlight further out is not gap).
            mid = int(np.clip(round((ui[j] + li[j]) / 2 - y0), 0, n - 1))
            reach = int(max(li[j] - ui[j], 0) / 2) + 2
            near = [r for r in range(max(mid - reach, 0), min(mid + reach + 1, n)) if interior[r, j]]
            if not near:
                continue
            r0 = r1 = min(near, key=lambda r: abs(r - mid))
            while r0 > 0 and (interior[r0 - 1, j] or (r0 > 1 and interior[r0 - 2, j])):
                r0 -= 1
            while r1 < n - 1 and (interior[r1 + 1, j] or (r1 < n - 2 and interior[r1 + 2, j])):
                r1 += 1
            a, b = y0 + r0, y0 + r1 + 1.0
            if inside[j]:
                top[j], bot[j] = min(top[j], a), max(bot[j], b)
            elif b - a >= 2:
                top[j], bot[j] = a, b
        return np.maximum(_box(_median(top, k), k), self.uo + 1.0), np.minimum(_box(_median(bot, k), k), self.lo - 1.0)

    def _occlusal_line(self, k: int) -> np.ndarray:
        """Per column, where the upper teeth end: the darkest row of the lower two thirds of the
        gap (the line between upper and lower teeth, or the lower lip's shadow when only the
        upper teeth show); what is above it stays with the skull when the jaw drops."""
        lum = self.image.astype(np.float32) @ _LUMA
        h = lum.shape[0]
        split = self.ui + 0.55 * self.gap
        found = np.zeros(len(split), bool)
        for j in np.flatnonzero(self.gap >= 3):
            a, b = int(np.ceil(self.ui[j] + 0.35 * self.gap[j])), min(int(np.floor(self.li[j])) + 1, h)
            if b - a < 2:
                continue
            col = np.convolve(lum[a:b, self.x0 + j], np.ones(3) / 3, mode="same")
            split[j], found[j] = a + float(np.argmin(col)), True
        if found.sum() >= 3:
            split[found] = _median(split[found], k)
        return np.clip(_box(split, 3 * k), self.ui + 0.3 * self.gap, self.li)

    def close(self, closure: float) -> np.ndarray:
        out = self.image.astype(np.float32).copy()
        c = float(np.clip(closure, 0.0, 1.0))
        if c <= 1e-3 or not self.gap.any():
            return out
        h = out.shape[0]
        d = c * self.gap
        uo2, ui2, li2, lo2 = self.uo + 0.2 * d, self.ui + 0.4 * d, self.li - 0.6 * d, self.lo - 0.3 * d
        top, bottom, uo, ui, li, lo = self.top, self.bottom, self.uo, self.ui, self.li, self.lo
        y = np.arange(h, dtype=np.float64)[:, None]
        src = np.where(y < top, y,
              np.where(y < uo2, _ramp(y, top, uo2, top, uo),
              np.where(y < ui2, _ramp(y, uo2, ui2, uo, ui),
              np.where(y < li2, y,
              np.where(y < lo2, _ramp(y, li2, lo2, li, lo),
              np.where(y < bottom, _ramp(y, lo2, bottom, lo, bottom), y))))))
        src = np.where(self.gap[None] > 0, src, y)
        rows = warp_rows(np.ascontiguousarray(self.image[:, self.x0 : self.x1]), src)
        # The parting line: darker where the lips meet, fading in as they close and out at the corners.
        meet = ui2 + 0.4 * (li2 - ui2)
        width = max(0.012 * self.iod, 0.7)
        depth = self.seam * c * c * np.clip(self.gap / max(0.03 * self.iod, 1e-6), 0, 1)
        line = 1 - depth[None] * np.exp(-0.5 * ((y - meet[None]) / width) ** 2)
        out[:, self.x0 : self.x1] = rows * line[..., None]
        return out

    def open(self, extra: float) -> np.ndarray:
        out = self.image.astype(np.float32).copy()
        if extra <= 1e-4 or self.x1 - self.x0 < 3:
            return out
        h = out.shape[0]
        xs = np.arange(self.x0, self.x1, dtype=np.float64)
        c, half = (self.pts[48, 0] + self.pts[54, 0]) / 2, max((self.pts[54, 0] - self.pts[48, 0]) / 2, 1.0)
        t = np.clip((xs - c) / half, -1, 1)
        D = extra * self.iod * (1 - t * t) ** 0.6
        split = self.split
        y = np.arange(h, dtype=np.float64)[:, None]
        lo2 = self.lo + D
        bottom = np.maximum(self.bottom, lo2 + 2.0)
        src = np.where(y < split, y, np.where(y < lo2, y - D, np.where(y < bottom, _ramp(y, lo2, bottom, self.lo, bottom), y)))
        rows = warp_rows(np.ascontiguousarray(self.image[:, self.x0 : self.x1]), src)
        # The cavity between split and split + D: soft-edged, darkest under the teeth, a tongue's
        # dark pink low in it.
        soft = max(0.008 * self.iod, 0.5)
        a = np.clip((y - split[None]) / soft + 0.5, 0, 1) * np.clip((split[None] + D[None] - y) / soft + 0.5, 0, 1)
        u = np.clip((y - split[None]) / np.maximum(D[None], 1.0), 0, 1)  # 0 under the teeth, 1 at the lower lip
        tongue = np.clip((u - 0.55) / 0.45, 0, 1)[..., None]
        colour = self.cavity[None, None] * (0.75 + 0.25 * u[..., None])
        colour = colour + 0.5 * tongue * (self.tongue[None, None] - colour)
        rows = rows + a[..., None] * (colour - rows)
        out[:, self.x0 : self.x1] = rows
        return out


def _pose(T: np.ndarray, p: Pose, depth: np.ndarray | float) -> np.ndarray:
    """Yaw / pitch parallax, roll about the neck and breathing, in the face frame (IOD)."""
    sy, sp = np.sin(np.radians(p.yaw)), np.sin(np.radians(p.pitch))
    T = T.copy()
    T[:, 0] = T[:, 0] * np.cos(np.radians(p.yaw)) + 0.9 * depth * sy + 0.15 * sy
    T[:, 1] = (T[:, 1] - 1.0) * np.cos(np.radians(p.pitch)) + 1.0 + 0.5 * depth * sp
    a = np.radians(p.roll)
    pivot = np.array([0.0, 2.4])  # below the chin
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    T = (T - pivot) @ R.T + pivot
    T[:, 1] += 0.016 * p.breath
    return T


def _head_ring(pts: np.ndarray, p: Pose, n_pts: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points around the head (hair, ears) before and after the pose alone."""
    m, e, n, iod = _frame(pts)
    a = np.linspace(0, 2 * np.pi, n_pts, endpoint=False)
    ring = np.stack([1.7 * np.cos(a), 0.9 + 2.1 * np.sin(a)], 1)
    moved = _pose(ring, p, 0.0)
    to_px = lambda q: m + iod * (q[:, :1] * e + q[:, 1:] * n)  # noqa: E731
    return to_px(ring), to_px(moved)


def border_points(side: int, n_per: int = 5) -> np.ndarray:
    s = np.linspace(0, side - 1, n_per)
    z, o = np.zeros(n_per), np.full(n_per, side - 1.0)
    return np.unique(np.concatenate([np.stack([s, z], 1), np.stack([s, o], 1), np.stack([z, s], 1), np.stack([o, s], 1)]), axis=0)


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-12)), 0.0) * 0.5


def tps_backward_map(dst: np.ndarray, src: np.ndarray, side: int, grid: int = 64, reg: float = 1e-5) -> torch.Tensor:
    """A (1, side, side, 2) grid_sample grid that maps output pixels near `dst` to `src`.

    The spline is fitted in [0, 1] coordinates and evaluated on a coarse grid, then
    upsampled: its displacement field is smooth, so a 64-point grid loses nothing visible.
    """
    d, s = dst / side, src / side
    n = len(d)
    K = _tps_kernel(((d[:, None] - d[None]) ** 2).sum(-1)) + reg * np.eye(n)
    P = np.concatenate([np.ones((n, 1)), d], 1)
    A = np.zeros((n + 3, n + 3))
    A[:n, :n], A[:n, n:], A[n:, :n] = K, P, P.T
    b = np.zeros((n + 3, 2))
    b[:n] = s - d
    coef = np.linalg.solve(A, b)
    g = (np.arange(grid) + 0.5) / grid
    gx, gy = np.meshgrid(g, g)
    q = np.stack([gx.ravel(), gy.ravel()], 1)
    r2 = (q * q).sum(1)[:, None] + (d * d).sum(1)[None] - 2 * q @ d.T
    Kq = _tps_kernel(np.maximum(r2, 0.0))
    disp = Kq @ coef[:n] + np.concatenate([np.ones((len(q), 1)), q], 1) @ coef[n:]
    field = torch.from_numpy(disp.reshape(grid, grid, 2).astype(np.float32)).permute(2, 0, 1)[None]
    field = F.interpolate(field, size=(side, side), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    u = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    base = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1)
    pos = base + field - 0.5 / side  # source position in [0, 1] of pixel centres
    return (pos * side / (side - 1) * 2 - 1)[None]  # align_corners=True coordinates


def warp_image(image: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return y[0].permute(1, 2, 0).clamp(0, 255).numpy()


def warp_rows(image: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Resample each output pixel from the source row `rows[y, x]` of its own column."""
    h, w = image.shape[:2]
    cols = np.broadcast_to(np.arange(w, dtype=np.float64), rows.shape)
    grid = torch.from_numpy(np.stack([cols / max(w - 1, 1), rows / max(h - 1, 1)], -1) * 2 - 1).float()[None]
    return warp_image(image, grid)


def _smooth_contour(points: np.ndarray, per_seg: int = 8) -> np.ndarray:
    """A closed Catmull-Rom curve through `points` (so a lens-shaped mouth is not an octagon)."""
    n = len(points)
    out = []
    for i in range(n):
        p0, p1, p2, p3 = points[(i - 1) % n], points[i], points[(i + 1) % n], points[(i + 2) % n]
        for t in np.linspace(0, 1, per_seg, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    return np.array(out)


def draw_mouth_interior(img: np.ndarray, T: np.ndarray, light: float, tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
                        style: Interior = CLIP_INTERIOR) -> None:
    """Paint cavity, upper teeth and tongue inside the inner-lip contour of landmarks T (in place)."""
    inner = T[60:68]
    gap = float(np.mean([T[lo, 1] - T[u, 1] for u, lo in _INNER_PAIRS]))
    if gap < 0.3:
        return
    side = img.shape[0]
    contour = _smooth_contour(inner)
    x0, y0 = np.floor(contour.min(0)).astype(int) - 2
    x1, y1 = np.ceil(contour.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, side), min(y1, side)
    if x1 <= x0 or y1 <= y0:
        return
    box = img[y0:y1, x0:x1]
    h, w = box.shape[:2]
    off = np.array([x0, y0], np.float64)
    inside = _coverage_box(h, w, [contour - off])
    _, _, _, iod = _frame(T)
    upper = _smooth_contour(inner)[: 4 * 8 + 1]  # 60 -> 64 along the upper edge
    teeth_h = min(style.teeth_height * gap, style.teeth_max_iod * iod)
    teeth_poly = np.concatenate([upper, upper[::-1] + np.array([0.0, teeth_h])]) - off
    teeth = _coverage_box(h, w, [teeth_poly]) * inside
    half_w = 0.5 * float(np.linalg.norm(T[64] - T[60]))  # half the inner mouth's width
    iw = 0.9 * half_w
    cx = float(T[[60, 64], 0].mean() - x0)
    if style.teeth_span < 1.0:  # fade out towards the corners (smoothstep over the outer share)
        u = np.abs(np.arange(w, dtype=np.float32) + 0.5 - cx) / max(half_w, 1e-6)
        k = np.clip((1.0 - u) / max(1.0 - style.teeth_span, 1e-6), 0, 1)
        teeth = teeth * (k * k * (3 - 2 * k))[None, :]
    tongue = _coverage_box(h, w, [], [(float(T[66, 0] - x0), float(T[66, 1] - y0 - style.tongue_lift * gap), 0.55 * iw,
                                       style.tongue_height * gap)]) * inside
    tint_ = np.array(tint, np.float32)
    cavity: np.ndarray | tuple[float, float, float] = style.cavity
    if style.shade > 0:  # darker towards the middle of the opening
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy = float(T[[62, 66], 1].mean() - y0)
        d = np.sqrt(((xx + 0.5 - cx) / max(half_w, 1)) ** 2 + ((yy + 0.5 - cy) / max(gap / 2, 1)) ** 2)
        cavity = np.array(style.cavity, np.float32) * (1 - style.shade * np.clip(1 - d, 0, 1))[..., None]
    for cov, col in ((inside, cavity), (teeth, style.teeth), (tongue * style.tongue_alpha, style.tongue)):
        colour = np.asarray(col, np.float32) * tint_ * light * 255.0
        box += cov[..., None] * (colour - box)


def _coverage_box(h: int, w: int, polys: list[np.ndarray], ellipses: list = (), ss: int = 4) -> np.ndarray:
    img = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        draw.polygon([(float(x) * ss, float(y) * ss) for x, y in poly], fill=255)
    for cx, cy, rx, ry in ellipses:
        draw.ellipse([(cx - rx) * ss, (cy - ry) * ss, (cx + rx) * ss, (cy + ry) * ss], fill=255)
    return np.asarray(img.resize((w, h), Image.BOX), np.float32) / 255.0


def face_light(image: np.ndarray, pts: np.ndarray) -> float:
    """Brightness of the skin around the nose relative to a mid-tone (lights the drawn interior)."""
    m, _, _, iod = _frame(pts)
    cx, cy = pts[30]
    r = max(int(0.25 * iod), 1)
    patch = image[max(int(cy) - r, 0) : int(cy) + r, max(int(cx) - r, 0) : int(cx) + r].reshape(-1, 3)
    if len(patch) == 0:
        return 1.0
    return float(np.clip(patch.mean() / 170.0, 0.35, 1.3))


class PhotoAnimator:
    """Animates one aligned face photo: `render(pose)` -> the warped frame at `out_res`.

    `image` is the aligned crop (S, S, 3) uint8 and `pts` its 68 landmarks in crop pixels;
    the warp runs at S and the result is area-averaged to `out_res` (S = 2 x out_res gives
    anti-aliased edges).
    """

    def __init__(self, image: np.ndarray, pts: np.ndarray, out_res: int | None = None,
                 tint: tuple[float, float, float] = (1.0, 1.0, 1.0), interior: Interior = CLIP_INTERIOR) -> None:
        self.image = np.asarray(image)
        self.pts = np.asarray(pts, np.float64)
        self.side = self.image.shape[0]
        self.out_res = out_res or self.side
        self.border = border_points(self.side)
        self.light = face_light(self.image, self.pts)
        self.tint, self.interior = tint, interior

    def landmarks(self, pose: Pose) -> np.ndarray:
        return target_landmarks(self.pts, pose)

    def render(self, pose: Pose) -> np.ndarray:
        T = self.landmarks(pose)
        ring_src, ring_dst = _head_ring(self.pts, pose)
        dst = np.concatenate([T, ring_dst, self.border])
        src = np.concatenate([self.pts, ring_src, self.border])
        grid = tps_backward_map(dst, src, self.side)
        rows = blink_map(self.pts, eye_closure(pose), self.side)
        image = self.image if rows is None else warp_rows(self.image, rows)
        out = warp_image(image, grid)
        draw_mouth_interior(out, T, self.light, self.tint, self.interior)
        if self.out_res != self.side:
            x = torch.from_numpy(out).permute(2, 0, 1)[None]
            out = F.interpolate(x, size=(self.out_res, self.out_res), mode="area")[0].permute(1, 2, 0).numpy()
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
