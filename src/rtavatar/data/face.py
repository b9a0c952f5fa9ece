"""Procedural faces: identity sampling and an anti-aliased, shaded 2.5-D renderer.

Shapes are signed distance fields (SDFs) in normalized image coordinates (x right, y down,
both in [-1, 1]); coverage = clip(0.5 - d / pixel, 0, 1) gives analytic anti-aliasing at any
resolution. The face is lit as an ellipsoid (Lambert + ambient); features sit on a sphere so
yaw/pitch move and foreshorten them, and roll rotates the whole head about the neck.

Geometric units match docs/DATA.md: mouth opening is in inter-ocular distances (IOD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtavatar.photo.animator import width_factor  # noqa: F401 - the renderer's, shared with the photo warp

HAIR_STYLES = ("bald", "buzz", "short", "side_part", "bob", "long", "bun", "curly", "fringe", "mohawk")
BACKGROUNDS = ("flat", "gradient", "stripes", "bokeh", "wall")

# Skin tones from light to deep (linear RGB-ish in 0..1); identities interpolate between neighbours.
_SKIN = np.array(
    [[0.98, 0.86, 0.76], [0.95, 0.78, 0.65], [0.87, 0.67, 0.52], [0.76, 0.55, 0.40],
     [0.62, 0.43, 0.30], [0.47, 0.32, 0.22], [0.34, 0.23, 0.16]],
    np.float32,
)
_HAIR = np.array(
    [[0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.42, 0.27, 0.14], [0.70, 0.52, 0.28], [0.88, 0.76, 0.50],
     [0.55, 0.20, 0.08], [0.62, 0.62, 0.62], [0.92, 0.92, 0.90], [0.25, 0.22, 0.40], [0.15, 0.35, 0.45]],
    np.float32,
)
_IRIS = np.array([[0.30, 0.18, 0.08], [0.15, 0.35, 0.60], [0.25, 0.45, 0.25], [0.45, 0.35, 0.20], [0.10, 0.08, 0.06], [0.40, 0.45, 0.50]], np.float32)


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look like themselves."""

    seed: int
    face_w: float  # half-width of the face ellipse
    face_h: float  # half-height
    jaw: float  # 0 round .. 1 narrow chin
    skin: tuple[float, float, float]
    light: tuple[float, float]  # light direction (x, y) on the face
    eye_sep: float  # half the inter-ocular distance
    eye_y: float
    eye_size: float
    eye_aspect: float
    iris: tuple[float, float, float]
    brow_thick: float
    brow_len: float
    brow_arch: float
    brow_color: tuple[float, float, float]
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float  # lip-corner half-width in IOD units (neutral)
    lip_upper: float
    lip_lower: float
    lip_color: tuple[float, float, float]
    hair_style: str
    hair_color: tuple[float, float, float]
    hair_volume: float
    background: str
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_phase: float
    shirt: tuple[float, float, float]
    ear_size: float
    glasses: bool
    beard: bool
    cheek_blush: float

    @property
    def iod(self) -> float:
        return 2.0 * self.eye_sep


def _mix(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.04) -> tuple[float, float, float]:
    i = rng.uniform(0, len(table) - 1)
    lo = int(np.floor(i))
    hi = min(lo + 1, len(table) - 1)
    c = table[lo] * (1 - (i - lo)) + table[hi] * (i - lo) + rng.normal(0, jitter, 3)
    return tuple(float(v) for v in np.clip(c, 0.02, 0.98))


def _rand_color(rng: np.random.Generator, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def sample_identity(seed: int) -> Identity:
    """A random identity; the same seed always gives the same person."""
    rng = np.random.default_rng([seed, 0x1D])
    skin = _mix(rng, _SKIN, 0.025)
    hair = _mix(rng, _HAIR, 0.05)
    eye_sep = rng.uniform(0.135, 0.175)
    lip = np.array(skin) * rng.uniform(0.55, 0.8) + np.array([0.18, 0.02, 0.04]) * rng.uniform(0.4, 1.2)
    return Identity(
        seed=seed,
        face_w=rng.uniform(0.36, 0.46),
        face_h=rng.uniform(0.50, 0.60),
        jaw=rng.uniform(0.0, 1.0),
        skin=skin,
        light=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.7, -0.1))),
        eye_sep=eye_sep,
        eye_y=rng.uniform(-0.14, -0.04),
        eye_size=rng.uniform(0.045, 0.065),
        eye_aspect=rng.uniform(0.45, 0.7),
        iris=_mix(rng, _IRIS, 0.05),
        brow_thick=rng.uniform(0.012, 0.03),
        brow_len=rng.uniform(0.065, 0.095),
        brow_arch=rng.uniform(0.0, 0.03),
        brow_color=tuple(float(v) for v in np.clip(np.array(hair) * rng.uniform(0.6, 1.0), 0, 1)),
        nose_len=rng.uniform(0.10, 0.17),
        nose_w=rng.uniform(0.035, 0.06),
        mouth_y=rng.uniform(0.25, 0.32),
        mouth_w=rng.uniform(0.36, 0.48),
        lip_upper=rng.uniform(0.012, 0.03),
        lip_lower=rng.uniform(0.016, 0.038),
        lip_color=tuple(float(v) for v in np.clip(lip, 0.05, 0.95)),
        hair_style=str(rng.choice(HAIR_STYLES)),
        hair_color=hair,
        hair_volume=rng.uniform(0.0, 1.0),
        background=str(rng.choice(BACKGROUNDS)),
        bg_a=_rand_color(rng),
        bg_b=_rand_color(rng),
        bg_phase=rng.uniform(0, 2 * np.pi),
        shirt=_rand_color(rng, 0.05, 0.95),
        ear_size=rng.uniform(0.05, 0.08),
        glasses=bool(rng.random() < 0.18),
        beard=bool(rng.random() < 0.15),
        cheek_blush=rng.uniform(0.0, 0.12),
    )


@dataclass
class FaceState:
    """Per-frame controls the renderer draws (ground truth in docs/DATA.md)."""

    mouth_open: float = 0.0  # inner-lip gap / IOD
    mouth_width: float = 0.0  # relative change of mouth width
    mouth_round: float = 0.0  # 0..1
    smile: float = 0.0  # -1 (frown) .. 1
    brow_raise: float = 0.0  # -1 (frown) .. 1
    eye_open_l: float = 1.0  # 0 closed .. 1 normal (.. 1.3 wide)
    eye_open_r: float = 1.0
    blink: float = 0.0  # 0 open .. 1 fully closed (multiplies eye openness)
    gaze_x: float = 0.0  # -1..1
    gaze_y: float = 0.0
    yaw: float = 0.0  # degrees, + turns to the viewer's right
    pitch: float = 0.0  # degrees, + looks down
    roll: float = 0.0  # degrees, + clockwise
    breath: float = 0.0  # -1..1 breathing phase (vertical sway)


def _cov(d: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased coverage of the region d < 0."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _ellipse(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse centred at the origin (first-order)."""
    xa, yb = x / a, y / b
    f = np.sqrt(xa * xa + yb * yb) + 1e-9
    g = np.sqrt((xa / a) ** 2 + (yb / b) ** 2) / f + 1e-9
    return (f - 1.0) / g


class Renderer:
    """Renders frames of one identity at one resolution (caches the static background)."""

    def __init__(self, identity: Identity, resolution: int = 128) -> None:
        if resolution < 32 or resolution > 2048:
            raise ValueError(f"resolution {resolution} out of range 32..2048")
        self.id = identity
        self.res = resolution
        self.px = 2.0 / resolution
        # Framing: a head-and-shoulders crop where the face spans ~60% of the frame width.
        zoom = 0.82
        c = ((np.arange(resolution, dtype=np.float32) + 0.5) * self.px - 1.0) * zoom + 0.04
        self.px *= zoom
        self.origin = float(c[0]) - 0.5 * self.px  # normalized coordinate of the image's left/top edge
        self.Y, self.X = np.meshgrid(c, c, indexing="ij")
        self.background = self._background()

    # ---------------------------------------------------------------- background
    def _background(self) -> np.ndarray:
        i, X, Y = self.id, self.X, self.Y
        a, b = np.array(i.bg_a, np.float32), np.array(i.bg_b, np.float32)
        if i.background == "flat":
            t = np.full_like(X, 0.15)
        elif i.background == "gradient":
            t = 0.5 + 0.5 * (np.cos(i.bg_phase) * X + np.sin(i.bg_phase) * Y) / 1.42
        elif i.background == "stripes":
            t = 0.5 + 0.5 * np.sign(np.sin(6.0 * (np.cos(i.bg_phase) * X + np.sin(i.bg_phase) * Y) + i.bg_phase))
            t = 0.25 + 0.5 * t
        elif i.background == "bokeh":
            rng = np.random.default_rng([i.seed, 0xB0])
            t = np.zeros_like(X)
            for _ in range(9):
                cx, cy, r = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.08, 0.3)
                t = np.maximum(t, 0.8 * np.clip(1 - np.hypot(X - cx, Y - cy) / r, 0, 1) ** 0.5)
        else:  # wall: a door/window edge and a floor-line
            edge = np.cos(i.bg_phase) * 0.7
            t = np.where(X > edge, 0.75, 0.2) + 0.1 * (Y > 0.6)
        img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
        vignette = 1.0 - 0.18 * (X**2 + Y**2)[..., None]
        return (img * vignette).astype(np.float32)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _paint(img: np.ndarray, cov: np.ndarray, color) -> None:  # noqa: ANN001 - array or rgb tuple
        c = cov[..., None]
        img *= 1 - c
        img += c * np.asarray(color, np.float32)

    def _box(self, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice]:
        """Pixel window covering a feature (features are small: evaluate them locally)."""
        to_px = lambda v: (v - self.origin) / self.px  # noqa: E731
        x0, x1 = int(max(0, np.floor(to_px(cx - rx)) - 1)), int(min(self.res, np.ceil(to_px(cx + rx)) + 2))
        y0, y1 = int(max(0, np.floor(to_px(cy - ry)) - 1)), int(min(self.res, np.ceil(to_px(cy + ry)) + 2))
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    # ---------------------------------------------------------------- render
    def render(self, s: FaceState) -> np.ndarray:
        """One RGB uint8 frame."""
        i, px = self.id, self.px
        img = self.background.copy()
        yaw, pitch, roll = np.radians([s.yaw, s.pitch, s.roll])
        sway = 0.006 * s.breath
        # Head coordinates: rotate the image grid about the neck pivot by -roll.
        pivot_x, pivot_y = 0.0, 0.55
        cr, sr = np.cos(roll), np.sin(roll)
        X0, Y0 = self.X - pivot_x, self.Y - pivot_y - sway
        HX = cr * X0 + sr * Y0 + pivot_x
        HY = -sr * X0 + cr * Y0 + pivot_y
        # Head centre shifts a little with yaw/pitch (the skull turns about the neck).
        hx, hy = 0.06 * np.sin(yaw), -0.06 + 0.05 * np.sin(pitch)
        skin = np.array(i.skin, np.float32)

        # Torso and neck (not rolled: the body stays upright).
        shirt = np.array(i.shirt, np.float32)
        d_torso = _ellipse(self.X - 0.25 * hx, self.Y - 1.22 - sway, 0.78, 0.5)
        shade = (0.85 + 0.15 * np.clip(-self.X * i.light[0], -1, 1))[..., None]
        self._paint(img, _cov(d_torso, px), shirt * shade)
        d_neck = np.maximum(np.abs(self.X - 0.5 * hx) - 0.15 * (i.face_w / 0.4), self.Y - 0.95)
        d_neck = np.maximum(d_neck, 0.2 - self.Y)
        self._paint(img, _cov(d_neck, px), skin * 0.72)

        # Hair behind the head (long styles).
        hc = np.array(i.hair_color, np.float32)
        if i.hair_style in ("long", "bob", "curly"):
            depth = {"long": 0.62, "bob": 0.32, "curly": 0.3}[i.hair_style]
            d_back = _ellipse(HX - hx * 0.6, HY - hy - depth * 0.5, i.face_w * (1.18 + 0.15 * i.hair_volume), i.face_h * 0.55 + depth * 0.75)
            self._paint(img, _cov(d_back, px), hc * 0.8)

        # Ears.
        for side in (-1, 1):
            ex = hx + side * i.face_w * np.cos(yaw) * 0.98 - 0.02 * np.sin(yaw)
            d_ear = _ellipse(HX - ex, HY - (hy + i.eye_y + 0.06), i.ear_size * 0.6, i.ear_size)
            self._paint(img, _cov(d_ear, px), skin * 0.85)

        # Face: ellipse whose lower half tapers into a chin.
        fx, fy = HX - hx, HY - hy
        taper = 1.0 - i.jaw * 0.35 * np.clip(fy / i.face_h, 0, 1) ** 2
        d_face = _ellipse(fx / taper, fy, i.face_w * (0.96 + 0.04 * np.cos(yaw)), i.face_h) * taper
        cov_face = _cov(d_face, px)
        u = np.clip(fx / i.face_w, -1, 1)
        v = np.clip(fy / i.face_h, -1, 1)
        nz = np.sqrt(np.clip(1 - u * u - v * v, 0, 1))
        lx, ly = i.light
        lz = np.sqrt(max(0.0, 1 - lx * lx - ly * ly))
        lambert = np.clip(u * lx + v * ly + nz * lz, 0, 1)
        shading = (0.55 + 0.5 * lambert)[..., None]
        face_col = skin * shading
        if i.cheek_blush > 0:
            for side in (-1, 1):
                cx = side * i.eye_sep * 1.1 + np.sin(yaw) * 0.12
                blush = np.exp(-((fx - cx) ** 2 + (fy - 0.12) ** 2) / 0.006)[..., None]
                face_col = face_col * (1 - i.cheek_blush * blush) + np.array([0.85, 0.35, 0.35], np.float32) * i.cheek_blush * blush
        self._paint(img, cov_face, face_col)

        # Features live on a sphere: horizontal position x -> x*cos(yaw) + depth*sin(yaw).
        def place(x: float, y: float, depth: float = 0.32) -> tuple[float, float]:
            return hx + x * np.cos(yaw) + depth * np.sin(yaw), hy + y * np.cos(pitch) + depth * np.sin(pitch) * 0.6

        squash = float(np.cos(yaw))
        if i.beard:
            bx, by = place(0.0, i.face_h * 0.78, 0.3)
            d_beard = np.maximum(_ellipse(HX - bx, HY - by, i.face_w * 0.7 * squash, i.face_h * 0.4), d_face)
            self._paint(img, _cov(d_beard, px) * 0.9, hc * 0.9)

        self._draw_eyes(img, HX, HY, s, place, squash)
        self._draw_brows(img, HX, HY, s, place, squash)
        self._draw_nose(img, HX, HY, place, squash, lambert)
        self._draw_mouth(img, HX, HY, s, place, squash)
        self._draw_hair(img, HX, HY, hx, hy, yaw, d_face)
        if i.glasses:
            self._draw_glasses(img, HX, HY, place, squash)
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _draw_eyes(self, img, HX, HY, s: FaceState, place, squash: float) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        a = i.eye_size
        for side, opening in ((-1, s.eye_open_r), (1, s.eye_open_l)):  # subject's right eye is on image left
            ex, ey = place(side * i.eye_sep, i.eye_y, 0.3)
            sl = self._box(ex, ey, a * 1.6, a * 1.6)
            x, y = HX[sl] - ex, HY[sl] - ey
            aw = a * squash
            open_frac = float(np.clip(opening * (1.0 - s.blink), 0.0, 1.4))
            # The visible eye is the part of the eye ellipse below the upper lid, a line that
            # falls from above the ellipse (open) to its bottom edge (closed).
            b = a * i.eye_aspect
            d_eye = _ellipse(x, y, aw, b)
            lid_y = b * (1.0 - 2.15 * open_frac) - 0.25 * b * (1 - (x / (aw + 1e-6)) ** 2) * (open_frac > 0.2)
            d_open = np.maximum(d_eye, lid_y - y)
            cov_open = _cov(d_open, px)
            # Socket shadow, then sclera, iris, pupil, catch-light, then the lash line.
            self._paint(img[sl], _cov(_ellipse(x, y, aw * 1.25, b * 1.35), px) * 0.25, np.array(i.skin) * 0.6)
            sub = img[sl]
            self._paint(sub, cov_open, (0.95, 0.94, 0.92))
            gx, gy = ex + s.gaze_x * aw * 0.45, ey + s.gaze_y * a * 0.25
            r_iris = a * 0.5
            d_iris = np.maximum(np.hypot((HX[sl] - gx) / max(squash, 0.3), HY[sl] - gy) - r_iris, d_open)
            self._paint(sub, _cov(d_iris, px), i.iris)
            d_pupil = np.maximum(np.hypot((HX[sl] - gx) / max(squash, 0.3), HY[sl] - gy) - r_iris * 0.45, d_open)
            self._paint(sub, _cov(d_pupil, px), (0.02, 0.02, 0.02))
            d_glint = np.hypot(HX[sl] - gx + r_iris * 0.3, HY[sl] - gy + r_iris * 0.3) - r_iris * 0.18
            self._paint(sub, _cov(np.maximum(d_glint, d_open), px) * 0.9, (1.0, 1.0, 1.0))
            lash = np.maximum(np.abs(y - np.maximum(lid_y, -b)) - px * 0.9, d_eye - px)
            self._paint(sub, _cov(lash, px), (0.08, 0.05, 0.04))

    def _draw_brows(self, img, HX, HY, s: FaceState, place, squash: float) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        lift = 0.035 * s.brow_raise + 0.012 * s.smile
        for side in (-1, 1):
            bx, by = place(side * (i.eye_sep + 0.01), i.eye_y - i.eye_size * 1.35 - lift, 0.3)
            L = i.brow_len * squash
            sl = self._box(bx, by, L * 1.3, 0.08)
            x, y = HX[sl] - bx, HY[sl] - by
            t = np.clip(x / (L + 1e-6), -1, 1)
            # Inner ends tilt down when frowning (brow_raise < 0), up when raised.
            tilt = -side * t * (0.012 * min(s.brow_raise, 0.0) - 0.006 * max(s.brow_raise, 0.0))
            centre = -i.brow_arch * (1 - t * t) + tilt
            thick = i.brow_thick * (1 - 0.5 * (side * t + 1) / 2 * 0.6)
            d = np.maximum(np.abs(y - centre) - thick * 0.5, np.abs(x) - L)
            self._paint(img[sl], _cov(d, px), i.brow_color)

    def _draw_nose(self, img, HX, HY, place, squash: float, lambert: np.ndarray) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        nx, ny = place(0.0, i.eye_y + 0.05 + i.nose_len, 0.42)
        sl = self._box(nx, ny - i.nose_len * 0.5, i.nose_w * 2, i.nose_len)
        x, y = HX[sl] - nx, HY[sl] - ny
        skin = np.array(i.skin, np.float32)
        # Side shadow of the nose bridge on the side away from the light.
        side = 1.0 if i.light[0] < 0 else -1.0
        ridge = np.maximum(np.abs(x - side * i.nose_w * 0.6 * squash) - px * 0.8, np.maximum(-y - i.nose_len, y))
        self._paint(img[sl], _cov(ridge, px) * 0.35, skin * 0.55)
        tip = _ellipse(x, y + i.nose_w * 0.1, i.nose_w * 1.0 * squash, i.nose_w * 0.7)
        self._paint(img[sl], np.clip(-tip / (i.nose_w * 0.7), 0, 1) * 0.25 * lambert[sl], (1.0, 0.95, 0.9))
        for s_ in (-1, 1):
            d = _ellipse(x - s_ * i.nose_w * 0.55 * squash, y - i.nose_w * 0.25, i.nose_w * 0.3 * squash, i.nose_w * 0.18)
            self._paint(img[sl], _cov(d, px) * 0.8, skin * 0.3)

    def _draw_mouth(self, img, HX, HY, s: FaceState, place, squash: float) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        iod = i.iod
        mx, my = place(0.0, i.mouth_y, 0.36)
        W = i.mouth_w * iod * width_factor(s.mouth_width, s.mouth_round, s.smile) * squash
        gap = s.mouth_open * iod
        sl = self._box(mx, my + gap * 0.3, W * 1.3, gap * 0.7 + i.lip_lower * 2 + 0.06)
        x, y = HX[sl] - mx, HY[sl] - my
        # Smile bends the mouth: corners rise (frown: fall) along a parabola.
        t = np.clip(x / (W + 1e-6), -1.2, 1.2)
        y = y + s.smile * 0.035 * t * t
        # The jaw drops the lower lip; the upper lip moves up a little (40/60 split). Inner lip
        # edges are arcs meeting at the corners, so an open mouth is lens-shaped.
        inner_w = W * 0.9
        ti = np.clip(x / (inner_w + 1e-6), -1, 1)
        p_in = np.clip(1 - ti * ti, 0, 1) ** 0.6
        y_up, y_lo = -0.4 * gap * p_in, 0.6 * gap * p_in
        p_out = np.clip(1 - t * t, 0, 1) ** 0.5
        bulge = 1 + 0.6 * s.mouth_round
        bow = 0.25 * i.lip_upper * np.exp(-((x / (W * 0.12 + 1e-6)) ** 2))  # Cupid's bow dip
        upper_top = y_up - i.lip_upper * bulge * (0.35 + 0.65 * p_out) + bow
        lower_bot = y_lo + i.lip_lower * bulge * (0.3 + 0.7 * p_out)
        d_lips = np.maximum(np.maximum(upper_top - y, y - lower_bot), np.abs(x) - W)
        lip = np.array(i.lip_color, np.float32)
        self._paint(img[sl], _cov(d_lips, px), lip)
        # Lower-lip highlight (light from above).
        d_hi = _ellipse(x, y - (y_lo + i.lip_lower * 0.55), W * 0.4, i.lip_lower * 0.3)
        self._paint(img[sl], _cov(d_hi, px) * 0.22, (1.0, 0.9, 0.9))
        if gap > 0.15 * px:
            d_in = np.maximum(np.maximum(y_up - y, y - y_lo), np.abs(x) - inner_w)
            cov_in = _cov(d_in, px)
            self._paint(img[sl], cov_in, (0.22, 0.05, 0.06))
            # Upper teeth just below the upper lip, tongue at the bottom.
            d_teeth = np.maximum(d_in, y - (y_up + min(gap * 0.3, 0.02)))
            self._paint(img[sl], _cov(d_teeth, px), (0.93, 0.92, 0.86))
            d_tongue = np.maximum(d_in, _ellipse(x, y - 0.6 * gap, inner_w * 0.55, gap * 0.3 + 1e-4))
            self._paint(img[sl], _cov(d_tongue, px) * 0.8, (0.72, 0.3, 0.32))
        # Lip line where the lips meet: a thin dark line when closed.
        d_line = np.maximum(np.abs(y - (y_up + y_lo) * 0.5) - px * 0.45 - 0.5 * gap * p_in, np.abs(x) - W * 0.95)
        self._paint(img[sl], _cov(d_line, px) * 0.8, lip * 0.45)

    def _draw_hair(self, img, HX, HY, hx: float, hy: float, yaw: float, d_face: np.ndarray) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        style = i.hair_style
        if style == "bald":
            return
        hc = np.array(i.hair_color, np.float32)
        fx, fy = HX - hx * 1.1, HY - hy
        vol = 0.02 + 0.05 * i.hair_volume
        cap = _ellipse(fx, fy + 0.04, i.face_w + vol, i.face_h + vol * 0.8)
        # Hairline: the cap covers the forehead down to a curve above the brows.
        hairline = {"buzz": -0.36, "short": -0.3, "side_part": -0.28, "bob": -0.26, "long": -0.27,
                    "bun": -0.33, "curly": -0.28, "fringe": -0.14, "mohawk": -0.4}[style]
        line = fy - (hairline + 0.06 * (fx / i.face_w) ** 2 * (1 if style != "side_part" else 0) + (0.08 * np.clip(fx, 0, 1) if style == "side_part" else 0))
        d = np.maximum(cap, line)
        if style == "mohawk":
            d = np.maximum(d, np.abs(fx - 0.03 * np.sin(yaw)) - 0.07)
            d = np.minimum(d, np.maximum(np.abs(fx) - 0.06, np.maximum(fy + i.face_h + 0.12, -fy - 0.2 - i.face_h * 0.5)))
        if style == "bun":
            d = np.minimum(d, _ellipse(fx, fy + i.face_h + 0.06, 0.13, 0.1))
        if style == "curly":
            ang = np.arctan2(fy, fx)
            d = d - 0.018 * np.sin(ang * 14) * (fy < 0)
        if style in ("bob", "long"):
            side = np.maximum(np.maximum(np.abs(fx) - (i.face_w + vol), i.face_w * 0.78 - np.abs(fx)), fy - (0.05 if style == "bob" else 0.45))
            side = np.maximum(side, -fy - 0.5 * i.face_h)  # strands start at the temples, not above the head
            d = np.minimum(d, side)
        alpha = 0.6 if style == "buzz" else 1.0
        col = hc * (0.85 + 0.25 * np.clip(-fy / i.face_h, 0, 1))[..., None]
        self._paint(img, _cov(d, px) * alpha, col)

    def _draw_glasses(self, img, HX, HY, place, squash: float) -> None:  # noqa: ANN001
        i, px = self.id, self.px
        r = i.eye_size * 1.5
        for side in (-1, 1):
            ex, ey = place(side * i.eye_sep, i.eye_y, 0.34)
            sl = self._box(ex, ey, r * 1.3, r * 1.3)
            ring = np.abs(_ellipse(HX[sl] - ex, HY[sl] - ey, r * squash, r * 0.8)) - px * 0.7
            self._paint(img[sl], _cov(ring, px), (0.1, 0.1, 0.12))
        bx, by = place(0.0, i.eye_y - 0.01, 0.4)
        sl = self._box(bx, by, i.eye_sep, 0.02)
        d = np.maximum(np.abs(HY[sl] - by) - px * 0.6, np.abs(HX[sl] - bx) - (i.eye_sep - i.eye_size * 1.5) * squash)
        self._paint(img[sl], _cov(d, px), (0.1, 0.1, 0.12))


def render_face(identity: Identity | int, state: FaceState | None = None, resolution: int = 128) -> np.ndarray:
    """Render one frame (convenience for tests and contact sheets)."""
    ident = sample_identity(identity) if isinstance(identity, int) else identity
    return Renderer(ident, resolution).render(state or FaceState())
