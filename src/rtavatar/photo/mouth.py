"""The mouth on a photo: the interior drawn inside opened lips, and lips a photo shows parted.

`draw_mouth_interior` paints the cavity, upper teeth and tongue a closed-mouth photo does not
have inside the moved inner-lip contour, lit like the face around it (`Interior`: the photo
training clips' style and the full-resolution paste's). `PartedLips` closes and opens lips a
photo shows parted (a smile over teeth), keeping the photo's own teeth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter, median_filter, uniform_filter1d

from rtavatar.photo.geometry import warp_rows
from rtavatar.photo.landmarks import (CHIN, INNER_BOTTOM, INNER_LEFT, INNER_LIPS, INNER_PAIRS, INNER_RIGHT, INNER_TOP,
                                     LOWER_INNER_CONTOUR, LOWER_OUTER_CONTOUR, LUMA, MOUTH_LEFT, MOUTH_RIGHT, NOSE_BOTTOM,
                                     NOSE_TIP, UPPER_INNER_CONTOUR, UPPER_OUTER_CONTOUR, face_axes, smoothstep)
from rtavatar.photo.lids import lid_curve

# Colours of the drawn mouth interior (0..1 RGB before lighting).
CAVITY, TEETH, TONGUE = (0.22, 0.05, 0.06), (0.93, 0.92, 0.86), (0.72, 0.30, 0.32)
TEETH_OF_WHITE = (1.0, 0.97, 0.9)  # teeth against the photo's white (`photo_white`): as bright, a little warmer


@dataclass(frozen=True)
class Interior:
    """How `draw_mouth_interior` paints an open mouth. Sizes are shares of the inner-lip gap
    (teeth also capped in IOD); `teeth_span` is the share of the mouth's width the upper teeth
    cover (1: corner to corner), `tongue_lift` how far above the lower lip the tongue's centre
    sits, `shade` how much darker the cavity is at its centre than at its rim. `teeth_show`
    (IOD): the teeth fade in as the inner-lip gap grows from the first value to the second
    (lips barely apart show a dark slit, not a band of teeth); (0, 0): always shown. The
    teeth's colour is `teeth` lit like the face, unless the caller gives the photo's own
    (`draw_mouth_interior(teeth_rgb=...)`: from its highlights, `photo_white`)."""

    cavity: tuple[float, float, float] = CAVITY
    shade: float = 0.0
    teeth: tuple[float, float, float] = TEETH
    teeth_height: float = 0.3
    teeth_max_iod: float = 0.054
    teeth_span: float = 1.0
    tongue: tuple[float, float, float] = TONGUE
    tongue_lift: float = 0.1
    tongue_height: float = 0.35
    tongue_alpha: float = 0.8
    teeth_show: tuple[float, float] = (0.0, 0.0)
    teeth_shadow: float = 0.0  # the teeth's top (under the upper lip) this much darker, and their sides towards the corners
    soften: float = 0.0  # IOD: the cavity's and the teeth's edges blurred by this much (a drawn edge reads as cut out)
    gaps: float = 0.0  # the lines between the upper teeth this much darker (0: one band), notched at the edge
    teeth_dark: tuple[float, float] = (0.0, 0.0)  # teeth this much darker with the lips barely apart, lit fully at this gap (IOD)


# The photo training clips' interior (the shipped models learned it; kept as it was made).
CLIP_INTERIOR = Interior()


# The full-resolution paste's (photo/compose.WarpedMouth): at a photo's own resolution the
# clips' interior reads as drawn -- a white band corner to corner, and a lip-pink tongue high in
# the mouth that dlib (and the eye) takes for the lower lip, so a wider opening read as a
# narrower one. Here the teeth are shaded and end before the corners, the tongue is darker and
# lies low, and the cavity darkens towards its centre; the teeth are shaded under the upper lip
# and towards the corners, and darker while the lips are barely apart, and every edge is
# softened a little.
PHOTO_INTERIOR = Interior(cavity=(0.2, 0.06, 0.07), teeth=(0.8, 0.76, 0.7), tongue=(0.5, 0.2, 0.22), teeth_height=0.4,
                          teeth_max_iod=0.07, teeth_span=0.7, tongue_lift=-0.15, tongue_height=0.3, tongue_alpha=0.7,
                          shade=0.45, teeth_show=(0.04, 0.1), teeth_shadow=0.35, soften=0.004, gaps=0.35,
                          teeth_dark=(0.45, 0.16))


def _median(v: np.ndarray, k: int) -> np.ndarray:
    """A running median over `k` samples (edges repeated): one stray column does not move a contour."""
    return v if k < 3 else median_filter(v, size=k, mode="nearest")


def _box(v: np.ndarray, k: int) -> np.ndarray:
    """A running mean over `k` (odd) samples (edges repeated)."""
    return v if k < 2 else uniform_filter1d(v, k, mode="nearest")


def _ramp(y: np.ndarray, a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Rows y in [a0, a1) mapped linearly onto [b0, b1) (per column)."""
    return b0 + (y - a0) * (b1 - b0) / np.maximum(a1 - a0, 1e-6)


def _curve(pts: np.ndarray, idx: tuple[int, ...], x: np.ndarray, k: int) -> np.ndarray:
    """A lip contour through landmarks `idx` at columns `x`, box-smoothed over `k` columns."""
    return _box(lid_curve(pts, idx, x), k)


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
        _, _, _, self.iod = face_axes(self.pts)
        self.x0, self.x1 = max(int(np.floor(self.pts[MOUTH_LEFT, 0])), 0), min(int(np.ceil(self.pts[MOUTH_RIGHT, 0])) + 1, w)
        self.seam = seam
        self.gap = np.zeros(max(self.x1 - self.x0, 0))
        self.cavity = self.tongue = np.asarray(PHOTO_INTERIOR.cavity, np.float32) * 255.0
        self.split = np.zeros(max(self.x1 - self.x0, 0))
        if self.x1 - self.x0 < 3:
            return
        xs = np.arange(self.x0, self.x1, dtype=np.float64)
        k = max(int(0.04 * self.iod), 1) | 1
        P = self.pts
        self.uo = _curve(P, UPPER_OUTER_CONTOUR, xs, k)
        ui = _curve(P, UPPER_INNER_CONTOUR, xs, k)
        li = _curve(P, LOWER_INNER_CONTOUR, xs, k)
        self.lo = _curve(P, LOWER_OUTER_CONTOUR, xs, k)
        inside = (xs >= P[INNER_LEFT, 0]) & (xs <= P[INNER_RIGHT, 0])
        ui, li = self._from_pixels(xs, ui, li, inside, k)
        self.ui, self.li = ui, li
        self.gap = np.maximum(li - ui, 0.0)
        self.gap[self.gap < 1.0] = 0.0
        self.top = (P[NOSE_BOTTOM, 1] + self.uo) / 2
        self.bottom = self.lo + 0.8 * max(P[CHIN, 1] - self.lo.max(), 1.0)
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
        lum = band @ LUMA
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
        lum = self.image.astype(np.float32) @ LUMA
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
        left, right = self.pts[MOUTH_LEFT, 0], self.pts[MOUTH_RIGHT, 0]
        c, half = (left + right) / 2, max((right - left) / 2, 1.0)
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
                        style: Interior = CLIP_INTERIOR, teeth_rgb: np.ndarray | None = None) -> None:
    """Paint cavity, upper teeth and tongue inside the inner-lip contour of landmarks T (in
    place); `teeth_rgb` (0..255): the teeth's colour as lit, instead of `style.teeth` x light."""
    inner = T[INNER_LIPS]
    gap = float(np.mean([T[lo, 1] - T[u, 1] for u, lo in INNER_PAIRS]))
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
    _, _, _, iod = face_axes(T)
    upper = _smooth_contour(inner)[: 4 * 8 + 1]  # 60 -> 64 along the upper edge
    teeth_h = min(style.teeth_height * gap, style.teeth_max_iod * iod)
    half_w = 0.5 * float(np.linalg.norm(T[INNER_RIGHT] - T[INNER_LEFT]))  # half the inner mouth's width
    iw = 0.9 * half_w
    cx = float(T[[INNER_LEFT, INNER_RIGHT], 0].mean() - x0)
    bounds = _tooth_bounds(iod)
    edge = upper[::-1] + np.array([0.0, teeth_h])
    if style.gaps > 0:  # each tooth's corners rounded: a small notch in the edge where two teeth meet
        d = np.min(np.abs((edge[:, :1] - off[0] - cx) - bounds[None]), axis=1)
        edge = edge - np.stack([np.zeros(len(d)), 0.15 * teeth_h * np.exp(-0.5 * (d / (0.012 * iod)) ** 2)], 1)
    teeth = _coverage_box(h, w, [np.concatenate([upper, edge]) - off]) * inside
    if style.teeth_span < 1.0:  # fade out towards the corners (smoothstep over the outer share)
        u = np.abs(np.arange(w, dtype=np.float32) + 0.5 - cx) / max(half_w, 1e-6)
        k = np.clip((1.0 - u) / max(1.0 - style.teeth_span, 1e-6), 0, 1)
        teeth = teeth * smoothstep(k)[None, :]
    lo, hi = style.teeth_show
    if hi > lo:
        teeth = teeth * float(smoothstep(np.clip((gap / iod - lo) / (hi - lo), 0, 1)))
    tongue = _coverage_box(h, w, [], [(float(T[INNER_BOTTOM, 0] - x0), float(T[INNER_BOTTOM, 1] - y0 - style.tongue_lift * gap), 0.55 * iw,
                                       style.tongue_height * gap)]) * inside
    if style.soften > 0:
        sigma = style.soften * iod
        inside, teeth = gaussian_filter(inside, sigma), gaussian_filter(teeth, sigma)
    tint_ = np.array(tint, np.float32)
    teeth_col: np.ndarray = (np.asarray(style.teeth, np.float32) * tint_ * light * 255.0 if teeth_rgb is None
                             else np.asarray(teeth_rgb, np.float32))
    if style.teeth_shadow > 0:  # in the upper lip's shadow at the top, receding towards the corners
        xs = np.arange(w, dtype=np.float32) + 0.5
        top = np.interp(xs, upper[:, 0] - x0, upper[:, 1] - y0).astype(np.float32)
        v = np.clip((np.arange(h, dtype=np.float32)[:, None] + 0.5 - top[None]) / max(teeth_h, 1e-3), 0, 1)
        u = np.clip(np.abs(xs - cx) / max(half_w, 1e-6), 0, 1)[None]
        lit = (1 - style.teeth_shadow * (1 - smoothstep(np.clip(v / 0.5, 0, 1)))) * (1 - style.teeth_shadow * u * u)
        if style.gaps > 0:  # the shadow between two teeth, deepest towards the biting edge
            d = np.min(np.abs((xs - cx)[:, None] - bounds[None]), axis=1)
            lit = lit * (1 - style.gaps * np.exp(-0.5 * (d / max(0.006 * iod, 0.5)) ** 2)[None] * (0.4 + 0.6 * v))
        teeth_col = teeth_col * lit[..., None]
    dark, lit_at = style.teeth_dark
    if dark > 0:  # a mouth barely open lets little light onto the teeth (from where they show)
        k = float(smoothstep(np.clip((gap / iod - lo) / max(lit_at - lo, 1e-6), 0, 1)))
        teeth_col = teeth_col * (1 - dark * (1 - k))
    cavity: np.ndarray | tuple[float, float, float] = style.cavity
    if style.shade > 0:  # darker towards the middle of the opening
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy = float(T[[INNER_TOP, INNER_BOTTOM], 1].mean() - y0)
        d = np.sqrt(((xx + 0.5 - cx) / max(half_w, 1)) ** 2 + ((yy + 0.5 - cy) / max(gap / 2, 1)) ** 2)
        cavity = np.array(style.cavity, np.float32) * (1 - style.shade * np.clip(1 - d, 0, 1))[..., None]
    lit_ = lambda col: np.asarray(col, np.float32) * tint_ * light * 255.0  # noqa: E731
    for cov, colour in ((inside, lit_(cavity)), (teeth, teeth_col), (tongue * style.tongue_alpha, lit_(style.tongue))):
        box += cov[..., None] * (colour - box)


def _tooth_bounds(iod: float) -> np.ndarray:
    """Image x (from the mouth's middle) where two upper teeth meet: incisors, canines and
    premolars along an arch of 0.4 IOD radius seen from the front, in pixels."""
    s = np.array([0.0, 0.13, 0.23, 0.34, 0.44])  # arc length from the middle (IOD); a central incisor 0.13
    x = 0.4 * np.sin(s / 0.4) * iod
    return np.concatenate([-x[:0:-1], x])


def _coverage_box(h: int, w: int, polys: list[np.ndarray], ellipses: list = (), ss: int = 4) -> np.ndarray:
    img = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        draw.polygon([(float(x) * ss, float(y) * ss) for x, y in poly], fill=255)
    for cx, cy, rx, ry in ellipses:
        draw.ellipse([(cx - rx) * ss, (cy - ry) * ss, (cx + rx) * ss, (cy + ry) * ss], fill=255)
    return np.asarray(img.resize((w, h), Image.BOX), np.float32) / 255.0


def photo_white(image: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
    """What a white surface looks like in this photo (RGB, 0..255): as bright as the face's
    highlights (the brightest 2 % of its pixels, eyes to mouth: the exposure and the light),
    grey but for a tenth of their colour (the light's cast: the brightest skin is still skin);
    None for a face too small to tell. Teeth are white on a dark face as on a pale one, which
    the skin's own brightness (`face_light`) cannot tell apart."""
    h, w = image.shape[:2]
    lo, hi = pts[17:68].min(0), pts[17:68].max(0)
    x0, y0 = np.maximum(np.floor(lo).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hi).astype(int) + 1, [w, h])
    px = image[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    if len(px) < 200:
        return None
    lum = px @ LUMA
    top = px[lum >= np.quantile(lum, 0.98)].mean(0)
    level = float(top @ LUMA)
    return 0.9 * level + 0.1 * top


def face_light(image: np.ndarray, pts: np.ndarray) -> float:
    """Brightness of the skin around the nose relative to a mid-tone (lights the drawn interior)."""
    m, _, _, iod = face_axes(pts)
    cx, cy = pts[NOSE_TIP]
    r = max(int(0.25 * iod), 1)
    patch = image[max(int(cy) - r, 0) : int(cy) + r, max(int(cx) - r, 0) : int(cx) + r].reshape(-1, 3)
    if len(patch) == 0:
        return 1.0
    return float(np.clip(patch.mean() / 170.0, 0.35, 1.3))

