"""Portrait registration: find the face in a loose photo, crop it the way the training data is
framed, and composite generated faces back into the original picture.

Three composites (`PASTE_MODES`). `face` pastes the whole generated face (for pictures that
are the model's own kind: synthetic or prepared crops). `photo` keeps the photo's own pixels
wherever the face did not move (see `PhotoPaste`): the model's 128 px face is far softer than
a photo, and a pasted 128 px face is what makes other systems' photos look like blurred
cartoons; but its open mouth is the model's painted one. `warp`, the default
(`LipWarpPaste`), keeps even the mouth the photo's own: its lips move to the opening the model
drew. Without landmarks (`align="center"`) `warp` falls back to `photo`.

Alignment (`align="face"`, the default) uses dlib's detector and 68 landmarks, the same
framing as `rtavatar prepare` (data/landmarks.py: eye line, inter-ocular and eye-mouth
distances). A photo with no face is refused; with several faces the largest is animated (a
warning names how many were found). `align="center"` takes the centre square as it is, for
pictures that already are face crops (the synthetic data, `prepare` output).

Paste-back resizes each generated face to its box in the original picture and blends it in
through a feathered mask, so the output keeps the photo's own framing and resolution; a
picture whose shorter side is under `MIN_PICTURE` px is first enlarged (Lanczos) to that, so
no output is a thumbnail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rtavatar.errors import RTAvatarError
from rtavatar.models.vae import LatentCodec

log = logging.getLogger(__name__)
ALIGNS = ("face", "center")
PASTE_MODES = ("warp", "photo", "face")
DEFAULT_PASTE_MODE = "warp"
# A photo whose own lips are parted at least this much (inner-lip gap, IOD) closes them in silence.
PARTED_REST = 0.04
MIN_PICTURE = 256  # px, the shorter side of the picture a portrait is registered (and pasted back) in
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class Portrait:
    """A registered photo: the aligned face crop, and where it sits in the original."""

    image: np.ndarray  # the original picture (H, W, 3) uint8
    face: np.ndarray  # the aligned crop (R, R, 3) uint8: what the model animates
    box: tuple[int, int, int]  # x0, y0, side of the crop in original pixels (may leave the picture)
    faces_found: int = 1
    landmarks: np.ndarray | None = None  # (68, 2) dlib points in original pixels (align="face")


def center_crop(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre square crop resized to the model's resolution (area-averaged when shrinking)."""
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    x = torch.from_numpy(np.array(image[y0 : y0 + s, x0 : x0 + s])).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(resolution, resolution), mode="area" if s > resolution else "bilinear",
                      align_corners=None if s > resolution else False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _at_least_min_picture(image: np.ndarray, name: str) -> np.ndarray:
    """`image` enlarged (Lanczos) so its shorter side is at least MIN_PICTURE px."""
    h, w = image.shape[:2]
    if min(h, w) >= MIN_PICTURE:
        return image
    k = MIN_PICTURE / min(h, w)
    nh, nw = round(h * k), round(w * k)  # the shorter side lands on MIN_PICTURE exactly
    log.info("%s: a %dx%d px picture is enlarged to %dx%d px", name, w, h, nw, nh)
    return np.asarray(Image.fromarray(image).resize((nw, nh), Image.LANCZOS))


def register(image: np.ndarray, resolution: int, align: str = "face", name: str = "portrait") -> Portrait:
    """Align a photo for a model of `resolution` px (see the module docstring)."""
    if align not in ALIGNS:
        raise RTAvatarError(f"unknown align {align!r}; use {' or '.join(ALIGNS)}")
    if align == "center":  # the model sees the crop as given (a training-size crop stays bit-exact)
        face = center_crop(image, resolution)
        image = _at_least_min_picture(image, name)
        h, w = image.shape[:2]
        s = min(h, w)
        return Portrait(image, face, ((w - s) // 2, (h - s) // 2, s))
    image = _at_least_min_picture(image, name)  # before detection too: dlib misses faces under ~80 px
    from rtavatar.data.landmarks import crop_frame, face_crop_box, shared_analyzer

    fa = shared_analyzer()
    faces = fa.detect(image)
    if not faces:
        raise RTAvatarError(f"{name}: no face found (dlib's detector needs a roughly frontal face of at least ~80 px); "
                            "for a picture that already is a face crop use align='center' (--align center)")
    if len(faces) > 1:
        log.warning("%s: %d faces found; animating the largest", name, len(faces))
    pts = fa.landmarks(image, faces[0].box)
    cx, cy, side = face_crop_box(pts[None])[0]
    side = max(int(round(side)), 8)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return Portrait(image, crop_frame(image, x0 + side / 2, y0 + side / 2, side, resolution), (x0, y0, side), len(faces),
                    pts.astype(np.float64))


def feather_mask(side: int, inset: float = 0.06, feather: float = 0.06) -> np.ndarray:
    """(side, side, 1) float32 blend weight: 1 inside, a smooth ramp over the outer border."""
    u = (np.arange(side, dtype=np.float32) + 0.5) / side
    edge = np.minimum(u, 1 - u)  # distance to the nearest border, in crop sides
    ramp = np.clip((edge - inset) / max(feather, 1e-6), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible seam
    return (ramp[:, None] * ramp[None, :])[..., None]


class PasteBack:
    """Composites generated faces into a Portrait's original picture."""

    def __init__(self, portrait: Portrait) -> None:
        self.base = portrait.image
        x0, y0, side = portrait.box
        h, w = self.base.shape[:2]
        self.side = side
        # The part of the box inside the picture, in picture and in box coordinates.
        self.dst = (max(0, y0), min(h, y0 + side), max(0, x0), min(w, x0 + side))
        self.src = (self.dst[0] - y0, self.dst[1] - y0, self.dst[2] - x0, self.dst[3] - x0)
        sy0, sy1, sx0, sx1 = self.src
        self.mask = feather_mask(side)[sy0:sy1, sx0:sx1]
        dy0, dy1, dx0, dx1 = self.dst
        self.under = self.base[dy0:dy1, dx0:dx1].astype(np.float32)

    def __call__(self, face: np.ndarray, controls: np.ndarray | None = None) -> np.ndarray:
        """(R, R, 3) generated face -> (H, W, 3) picture (the controls are the model's own here)."""
        big = np.asarray(Image.fromarray(face).resize((self.side, self.side), Image.BICUBIC), np.float32)
        sy0, sy1, sx0, sx1 = self.src
        dy0, dy1, dx0, dx1 = self.dst
        out = self.base.copy()
        blend = self.under + self.mask * (big[sy0:sy1, sx0:sx1] - self.under)
        out[dy0:dy1, dx0:dx1] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W), edges replicated."""
    r = max(int(3 * sigma), 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[0]
    y = F.pad(x[None], (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def box_pixels(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The (side, side, 3) pixels of a crop box, edge-padded where it leaves the picture."""
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def lower_face_mask(side: int, pts: np.ndarray | None, drop: float = 0.45, feather: float = 0.12) -> np.ndarray:
    """(side, side) weight of the region a talking face moves: nose tip to below the chin.

    `pts` are the 68 landmarks in box pixels (None: the training framing's mouth position).
    The chin is extended by `drop` inter-ocular distances (an open jaw), and the edge is
    feathered over `feather` IOD.
    """
    from PIL import ImageDraw

    from rtavatar.data.landmarks import EYE_MOUTH_FRAC, EYE_Y, IOD_FRAC

    if pts is None:  # a face crop in the training framing: a box around the mouth
        iod = IOD_FRAC * side
        cy = (EYE_Y + EYE_MOUTH_FRAC) * side
        poly = [(side / 2 - 1.3 * iod, cy - 0.55 * iod), (side / 2 + 1.3 * iod, cy - 0.55 * iod),
                (side / 2 + 1.1 * iod, cy + 1.2 * iod), (side / 2 - 1.1 * iod, cy + 1.2 * iod)]
    else:
        le, re_ = pts[36:42].mean(0), pts[42:48].mean(0)
        iod = float(np.linalg.norm(re_ - le))
        down = np.array([-(re_ - le)[1], (re_ - le)[0]]) / max(iod, 1e-6)
        top = pts[30] - 0.05 * iod * down
        jaw = [pts[i] + drop * iod * down * (1 - abs(i - 8) / 9) for i in range(2, 15)]
        poly = [tuple(p) for p in [np.array([pts[2][0], top[1]])] + jaw + [np.array([pts[14][0], top[1]])]]
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).polygon(poly, fill=255)
    m = torch.from_numpy(np.asarray(img, np.float32) / 255.0)[None]
    return _blur(m, feather * iod / 2)[0].clamp(0, 1).numpy()


class ExpressionWarp:
    """Smile, brows and eye openness on the photo itself, from the controls of each frame.

    The model learned these controls on drawn faces, but not on photos (docs/RESULTS.md:
    `smile=1` changed a photo's mouth width by < 1 %). So on a photo they are applied the way
    the photo training clips were made: the photo's landmarks move as data/warp.py's
    `target_landmarks` puts them (mouth corners out and up, brows up or down; the opening is
    the model's), and a thin-plate spline resamples the composite in a square from above the
    brows to below the chin, its border fixed. Eye openness below 1 paints the lids partly
    shut (`paint_blink`). Values are relative to the neutral face (NEUTRAL), which is taken to
    be the photo's own; a neutral frame costs nothing, and grids are cached per value.
    """

    def __init__(self, image_shape: tuple[int, ...], pts: np.ndarray, cache: int = 8) -> None:
        from rtavatar.data.warp import _frame, border_points
        from rtavatar.models.conditioning import CONTROLS, NEUTRAL

        self.pts = np.asarray(pts, np.float64)
        m, _, n, iod = _frame(self.pts)
        centre = m + 0.45 * iod * n
        self.side = max(int(round(2.8 * iod)), 16)
        self.x0, self.y0 = int(round(centre[0] - self.side / 2)), int(round(centre[1] - self.side / 2))
        h, w = image_shape[:2]
        # The square's part inside the picture, in picture and in square coordinates.
        self.dst = (max(0, self.y0), min(h, self.y0 + self.side), max(0, self.x0), min(w, self.x0 + self.side))
        self.local = self.pts - np.array([self.x0, self.y0], np.float64)
        self.border = border_points(self.side, 7)
        self.index = {k: CONTROLS.index(k) for k in ("smile", "brow_raise", "eye_open_l", "eye_open_r")}
        self.neutral = NEUTRAL
        self.cache, self._grids = cache, {}  # type: ignore[var-annotated]

    def _grid(self, smile: float, brow: float) -> torch.Tensor:
        from rtavatar.data.warp import Pose, target_landmarks, tps_backward_map

        key = (smile, brow)
        if key not in self._grids:
            if len(self._grids) >= self.cache:
                self._grids.pop(next(iter(self._grids)))
            pose = Pose(smile=smile - self.neutral["smile"], brow_raise=brow - self.neutral["brow_raise"])
            T = target_landmarks(self.local, pose, open_mouth=False)
            self._grids[key] = tps_backward_map(np.concatenate([T, self.border]), np.concatenate([self.local, self.border]),
                                                self.side)
        return self._grids[key]

    def closure(self, controls: np.ndarray) -> tuple[float, float]:
        """Lid closure of the image-left and image-right eye (the subject's right, left) from eye openness."""
        return (float(np.clip(1 - controls[self.index["eye_open_r"]], 0, 1)),
                float(np.clip(1 - controls[self.index["eye_open_l"]], 0, 1)))

    def __call__(self, out: np.ndarray, controls: np.ndarray) -> None:
        """Warp picture `out` (H, W, 3) uint8 in place for a frame's (n_controls,) model-scale controls."""
        smile = round(float(controls[self.index["smile"]]), 2)
        brow = round(float(controls[self.index["brow_raise"]]), 2)
        if abs(smile - self.neutral["smile"]) < 0.01 and abs(brow - self.neutral["brow_raise"]) < 0.01:
            return
        from rtavatar.data.warp import warp_image

        square = box_pixels(out, (self.x0, self.y0, self.side))
        warped = warp_image(square, self._grid(smile, brow))
        dy0, dy1, dx0, dx1 = self.dst
        sy, sx = dy0 - self.y0, dx0 - self.x0
        out[dy0:dy1, dx0:dx1] = np.clip(warped[sy : sy + dy1 - dy0, sx : sx + dx1 - dx0] + 0.5, 0, 255).astype(np.uint8)


class HeadMotion:
    """Small head motion on a photo: the head sways, tilts and nods by a smooth warp.

    The model's own head motion is all but absent on photos (its training photo clips keep 35 %
    of the behaviour's motion, and a 128 px face is never pasted whole), and a head that never
    moves reads as a still photo with a moving mouth. Each frame the head region (an ellipse
    around the face and hair, weight 1, falling smoothly to 0 over `falloff` of its radius into
    the background) is moved rigidly: rolled about a point below the chin (so the neck barely
    moves) and shifted sideways (yaw: 0.015 IOD a degree) and up or down (pitch: 0.012). The
    angles are a seeded sum of slow sinusoids (0.05-0.4 Hz; std `roll`, `yaw`, `pitch` degrees,
    `amplitude` times), 1.6x larger while the avatar speaks, plus the `yaw`, `pitch` and `roll`
    controls; the picture's edges stay put. Kept small: a 2-D warp bends what is behind the
    head (a door frame next to it curves by a few pixels at the extremes). One bilinear
    resample of the head's box a frame, the displacement computed on an 8 px grid (10-25 ms
    on a 1,024 px photo, 1-2 ms on the bundled 300x400 one).
    """

    def __init__(self, image_shape: tuple[int, ...], pts: np.ndarray, seed: int = 0, amplitude: float = 1.0,
                 roll: float = 1.0, yaw: float = 1.0, pitch: float = 0.8, falloff: float = 0.6) -> None:
        from rtavatar.data.warp import _frame
        from rtavatar.models.conditioning import CONTROLS

        m, e, n, iod = _frame(np.asarray(pts, np.float64))
        self.iod, self.e, self.n = iod, e, n
        centre = m + 0.7 * iod * n
        self.pivot = m + 2.8 * iod * n
        h, w = image_shape[:2]
        ax, ay = 1.9 * iod, 2.4 * iod  # the head's half-axes along e and n
        reach = 1 + falloff
        r = reach * max(ax, ay)
        self.box = (int(max(centre[1] - r, 0)), int(min(centre[1] + r, h)), int(max(centre[0] - r, 0)), int(min(centre[0] + r, w)))
        y0, y1, x0, x1 = self.box
        # The displacement is smooth: it is computed on an 8 px grid and upsampled.
        gh, gw = max((y1 - y0) // 8, 2), max((x1 - x0) // 8, 2)
        yy, xx = np.meshgrid(np.linspace(y0, y1, gh), np.linspace(x0, x1, gw), indexing="ij")
        xy = np.stack([xx, yy], -1)
        d = xy - centre
        q = np.sqrt((d @ e / ax) ** 2 + (d @ n / ay) ** 2)
        k = np.clip((reach - q) / falloff, 0, 1)
        # ... and to 0 at the picture's edges, which stay put (a tight crop's chin may touch one).
        edge = np.minimum(np.minimum(xx, w - 1 - xx), np.minimum(yy, h - 1 - yy))
        k = k * np.clip(edge / (0.5 * iod), 0, 1)
        self.size = (x1 - x0, y1 - y0)
        # The weight, times the pixel -> grid_sample coordinate scale of each axis.
        self.weight = torch.from_numpy((k * k * (3 - 2 * k))[..., None] * (2.0 / np.array(self.size))).float()
        self.rel = torch.from_numpy(xy - self.pivot).float()
        u = lambda size: (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # noqa: E731
        gy, gx = torch.meshgrid(u(y1 - y0), u(x1 - x0), indexing="ij")
        self.grid = torch.stack([gx, gy], -1)[None]
        rng = np.random.default_rng(seed)
        self.waves = {axis: (rng.uniform(0.05, 0.4, 3), rng.uniform(0, 2 * np.pi, 3), std)
                      for axis, std in (("roll", roll), ("yaw", yaw), ("pitch", pitch))}
        self.amplitude = amplitude
        self.index = {k: CONTROLS.index(k) for k in ("yaw", "pitch", "roll")}
        self.level = 0.0  # how much the avatar is speaking, smoothed over ~0.5 s

    def angles(self, frame: int, speaking: bool, controls: np.ndarray | None = None) -> dict[str, float]:
        """This frame's roll / yaw / pitch in degrees."""
        self.level += (float(speaking) - self.level) * 0.08
        t = frame / 25.0
        out = {}
        for axis, (f, ph, std) in self.waves.items():
            v = float(np.sum(np.sin(2 * np.pi * f * t + ph))) * std / np.sqrt(1.5)  # unit std for 3 sines
            out[axis] = self.amplitude * (1 + 0.6 * self.level) * v
            if controls is not None:
                out[axis] += float(controls[self.index[axis]]) * 20.0  # model scale: degrees / 20
        return out

    def __call__(self, out: np.ndarray, frame: int, speaking: bool, controls: np.ndarray | None = None) -> None:
        """Move the head of picture `out` (H, W, 3) uint8 in place."""
        a = self.angles(frame, speaking, controls)
        if max(abs(v) for v in a.values()) < 0.02:
            return
        th = np.deg2rad(a["roll"])
        c, s_ = float(np.cos(th)), float(np.sin(th))
        shift = torch.from_numpy(self.iod * (0.015 * a["yaw"] * self.e + 0.012 * a["pitch"] * self.n)).float()
        # Backward map: an output pixel x shows the input at x - w(x) * ((R - I)(x - pivot) + shift).
        rx, ry = self.rel[..., 0], self.rel[..., 1]
        move = torch.stack([(c - 1) * rx - s_ * ry, s_ * rx + (c - 1) * ry], -1) + shift
        wdt, hgt = self.size
        disp = self.weight * move
        disp = F.interpolate(disp.permute(2, 0, 1)[None], size=(hgt, wdt), mode="bilinear", align_corners=True)
        y0, y1, x0, x1 = self.box
        region = torch.from_numpy(np.ascontiguousarray(out[y0:y1, x0:x1])).permute(2, 0, 1)[None].float()
        res = F.grid_sample(region, self.grid - disp.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                            align_corners=False)
        out[y0:y1, x0:x1] = res[0].add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


class PhotoPaste:
    """Composites generated faces into a photo, keeping the photo's own pixels where nothing moved.

    With the photo P (the crop box at its own resolution), the model's reconstruction of its
    portrait R and a generated frame G (both upsampled), inside the lower-face mask M:

        out = P + M * (G - R - (1 - w) * D),   D = P - R - lowpass(P - R)

    where w -> 1 where G equals R (nothing moved: out is the photo itself, sharp) and w -> 0
    where the face changed shape (an open mouth: out is G plus the photo's low-frequency
    colour, so the generated mouth matches the photo's lighting). w reads only the change's
    fine part, G - R minus its blur over `shade_sigma` face pixels: a one-step model also
    shifts the shading of the whole lower face a little, and judged by the full change that
    shift traded the photo's skin texture for the model's soft 128 px skin. Outside M the photo is untouched but for
    blinks: with landmarks, the photo's own eyelids close by a warp (data/warp.py) about
    `blinks_per_minute` times a minute (seeded), so a photo avatar never stares. With a frame's
    controls, smile, brows and eye openness then move the photo by `ExpressionWarp`, and last
    the head moves by `HeadMotion` (`head_motion` scales it; 0 keeps the head still).
    """

    def __init__(self, portrait: Portrait, recon: np.ndarray, tau: float = 18.0, blinks_per_minute: float = 15.0,
                 seed: int = 0, shade_sigma: float = 3.0, head_motion: float = 1.0) -> None:
        self.base = portrait.image
        x0, y0, side = portrait.box
        self.side, self.tau, self.shade_sigma = side, tau, shade_sigma
        pts = None if portrait.landmarks is None else portrait.landmarks - np.array([x0, y0], np.float64)
        mask = lower_face_mask(side, pts)
        ys, xs = np.nonzero(mask > 1e-3)
        h, w = self.base.shape[:2]
        # Work only on the mask's bounding box, clipped to the picture.
        by0, by1 = max(int(ys.min()), -y0), min(int(ys.max()) + 1, h - y0)
        bx0, bx1 = max(int(xs.min()), -x0), min(int(xs.max()) + 1, w - x0)
        if by1 <= by0 or bx1 <= bx0:
            raise RTAvatarError("the face's mouth region lies outside the picture")
        self.crop = (by0, by1, bx0, bx1)
        self.dst = (y0 + by0, y0 + by1, x0 + bx0, x0 + bx1)
        self.mask = mask[by0:by1, bx0:bx1, None]
        P = torch.from_numpy(box_pixels(self.base, portrait.box).astype(np.float32)).permute(2, 0, 1)
        self.recon = recon.astype(np.float32)
        # Where each box pixel samples the (R, R) face: the whole box once, the mask's box per frame.
        self.grid = self._grid(0, side, 0, side)
        Rb = self._up(recon)
        detail = (P - Rb) - _blur(P - Rb, side / 48)
        self.grid = self._grid(by0, by1, bx0, bx1)
        self.Rb = Rb[:, by0:by1, bx0:bx1]
        self.detail = detail[:, by0:by1, bx0:bx1]
        self.under = self.base[self.dst[0] : self.dst[1], self.dst[2] : self.dst[3]].astype(np.float32)
        self.eyes = None if portrait.landmarks is None else self._eye_band(portrait.landmarks)
        self.expression = None if portrait.landmarks is None else ExpressionWarp(self.base.shape, portrait.landmarks)
        self.motion = (None if portrait.landmarks is None or head_motion <= 0 else
                       HeadMotion(self.base.shape, portrait.landmarks, seed, head_motion))
        self.rng = np.random.default_rng(seed)
        self.per_minute, self.frame = blinks_per_minute, 0
        self.next_blink = self._gap() * 0.5

    def _eye_band(self, pts: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """The picture rows / columns around both eyes and the landmarks in that band."""
        h, w = self.base.shape[:2]
        iod = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
        x0, x1 = int(max(pts[36, 0] - 0.5 * iod, 0)), int(min(pts[45, 0] + 0.5 * iod, w))
        y0, y1 = int(max(pts[17:27, 1].min() - 0.2 * iod, 0)), int(min(pts[36:48, 1].max() + 0.5 * iod, h))
        return (y0, y1, x0, x1), pts - np.array([x0, y0], np.float64)

    def _gap(self) -> float:
        return float(self.rng.gamma(2.0, 60.0 / max(self.per_minute, 1e-6) / 2.0)) * 25.0  # frames

    def _blink(self) -> float:
        """This frame's lid closure (0..1): 80 ms closing, 40 ms shut, 160 ms opening."""
        if self.per_minute <= 0:
            return 0.0
        t = (self.frame - self.next_blink) / 25.0
        if t > 0.28:
            self.next_blink = self.frame + self._gap()
            return 0.0
        if t < 0:
            return 0.0
        return float(min(t / 0.08, 1.0, max(0.0, 1 - (t - 0.12) / 0.16)))

    def _grid(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        u = lambda a, b: (torch.arange(a, b, dtype=torch.float32) + 0.5) / self.side * 2 - 1  # noqa: E731
        gy, gx = torch.meshgrid(u(y0, y1), u(x0, x1), indexing="ij")
        return torch.stack([gx, gy], -1)[None]

    def _up(self, face: np.ndarray | torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(face) if isinstance(face, np.ndarray) else face, dtype=torch.float32)
        x = x.permute(2, 0, 1)[None] if x.shape[-1] == 3 else x[None]
        return F.grid_sample(x, self.grid, mode=mode, padding_mode="border", align_corners=False)[0]

    def _mouth(self, out: np.ndarray, face: np.ndarray) -> None:
        """The generated lower face, composited into `out` (in place)."""
        d = torch.from_numpy(face.astype(np.float32) - self.recon).permute(2, 0, 1)
        change = (d - _blur(d, self.shade_sigma)).abs().mean(0, keepdim=True)
        w = (1 - _blur(change, 1.0) / self.tau).clamp(0, 1)
        w = self._up(w, "bilinear")
        delta = (self._up(face) - self.Rb - (1 - w) * self.detail).permute(1, 2, 0).numpy()
        dy0, dy1, dx0, dx1 = self.dst
        out[dy0:dy1, dx0:dx1] = np.clip(self.under + self.mask * delta + 0.5, 0, 255).astype(np.uint8)

    def _speaking(self) -> bool:
        return False  # the photo composite does not read the opening

    def __call__(self, face: np.ndarray, controls: np.ndarray | None = None) -> np.ndarray:
        """(R, R, 3) generated face (and its (n_controls,) model-scale controls) -> (H, W, 3) picture."""
        out = self.base.copy()
        frame = self.frame
        if self.eyes is not None:
            c = self._blink()
            self.frame += 1
            held = (0.0, 0.0) if controls is None or self.expression is None else self.expression.closure(controls)
            lids = (max(c, held[0]), max(c, held[1]))
            if max(lids) > 0:
                from rtavatar.data.warp import paint_blink

                (ey0, ey1, ex0, ex1), pts = self.eyes
                band = paint_blink(self.base[ey0:ey1, ex0:ex1], pts, lids)
                out[ey0:ey1, ex0:ex1] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        self._mouth(out, face)
        if controls is not None and self.expression is not None:
            self.expression(out, controls)
        if self.motion is not None:
            self.motion(out, frame, self._speaking(), controls)
        return out


class MouthReader:
    """How far the generated face's mouth is open (inner-lip gap, IOD), read off its pixels.

    The photo training clips draw an open mouth as a dark cavity inside the lips; the model
    learned to draw it so. In a box between the photo's mouth corners, `inset` IOD in from each
    (landmarks in the R px crop), each pixel's darkening against the portrait's reconstruction
    is taken as a share of the way to the cavity's colour; shares below `floor` count as none
    (the lips of a closed generated mouth are a little darker than the photo's), and the rest
    sums per column to the cavity's height. The columns' mean, in IOD and times `gain`, is the
    opening (it measures the change from the portrait, not the absolute gap).
    The median change of the box's top and bottom rows is taken off first: a one-step model
    also shifts the shading of the whole lower face, and that is not an opening. Brightening
    (teeth) is not counted: on photos the model brightens lips and skin as often as it draws
    teeth. These choices were made on training-set photos and the "dev" held-out photos of
    docs/RESULTS.md, not on the ones it reports as fresh.
    """

    def __init__(self, recon: np.ndarray, pts: np.ndarray, gain: float = 1.0, floor: float = 0.15,
                 inset: float = 0.1) -> None:
        from rtavatar.data.warp import CAVITY, _frame, face_light

        r = recon.shape[0]
        _, _, _, self.iod = _frame(pts)
        cy = float(pts[[62, 66], 1].mean())
        self.box = (int(max(cy - 0.4 * self.iod, 0)), int(min(cy + 0.5 * self.iod, r - 1)) + 1,
                    int(max(pts[48, 0] + inset * self.iod, 0)), int(min(pts[54, 0] - inset * self.iod, r - 1)) + 1)
        self.lum_r = self._lum(recon)
        self.cavity = float(np.dot(CAVITY, _LUMA)) * face_light(recon, pts) * 255.0
        self.gain, self.floor = gain, floor

    def _lum(self, img: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return img[y0:y1, x0:x1].astype(np.float32) @ _LUMA

    def __call__(self, face: np.ndarray) -> float:
        diff = self._lum(face) - self.lum_r
        rim = np.concatenate([diff[0], diff[-1]])  # rows above and below the lips (a wide cavity reaches the sides)
        dark = np.clip((float(np.median(rim)) - diff) / np.maximum(self.lum_r - self.cavity, 15.0), 0, 1)
        dark = np.clip((dark - self.floor) / (1 - self.floor), 0, 1)
        return self.gain * float(dark.sum(0).mean()) / self.iod


class ExpertMouthReader:
    """How far the generated face's mouth is open (inner-lip gap, IOD), read by a sync expert's
    aperture head (models/syncnet.ApertureHead) that ships with the model.

    The head was trained on the ground truth of the training clips, the photo clips' drawn
    cavities among them, and it is the reader the model's aperture loss was trained against; so
    it reads the openings the model draws as the training taught it to draw them, rather than
    by one hand-set rule on darkness. Like MouthReader's, the reading is the change from the
    model's reconstruction of the portrait, times `gain`: a constant bias of the head on one
    face cancels, and the photo's own parted lips are not an opening. (Read as absolute, the
    head puts a smile over teeth at 0, and the warp then shuts such a photo's lips whenever
    the model's mouth is shut; but the teeth are squeezed into a white seam between the lips:
    docs/RESULTS.md.)
    """

    def __init__(self, recon: np.ndarray, head: Any, gain: float = 1.0) -> None:
        self.head, self.gain = head, gain
        self.rest = self._read(recon)

    def _read(self, face: np.ndarray) -> float:
        with torch.no_grad():  # the same scaling as the expert's training crops
            return float(self.head(LatentCodec.to_tensor(face[None]))[0])

    def __call__(self, face: np.ndarray) -> float:
        return self.gain * (self._read(face) - self.rest)


class LipWarpPaste(PhotoPaste):
    """The photo's own lips move to the opening the model drew (paste mode `warp`).

    Each generated frame's opening is read off its pixels (`MouthReader`), and the photo's
    mouth is re-rendered at the photo's resolution by the landmark warp the photo training clips
    were made with (data/warp.py's PhotoAnimator: lips and jaw move, the cavity, teeth and tongue
    are drawn inside). The model decides when and how far the mouth opens; the pixels are the
    photo's. The reader is the model's aperture head (`ExpertMouthReader`) when `head` is given
    (a model that ships one), else `MouthReader`. A photo whose own lips are parted by at least
    PARTED_REST (a smile over teeth) is moved by data/warp.py's `PartedLips` instead (`gap`):
    its lips close when the model's mouth is closed, and in speech its jaw drops under its own
    upper teeth (`close_lips=False`: the photo's parted lips stay its rest, e.g. a smile kept
    while listening). Blinks and the expression controls are PhotoPaste's.
    """

    def __init__(self, portrait: Portrait, recon: np.ndarray, gain: float = 1.0, step: float = 0.005, cache: int = 128,
                 head: Any = None, close_lips: bool = True, close_ramp: float = 0.1, **kwargs: Any) -> None:
        if portrait.landmarks is None:
            raise RTAvatarError("paste mode 'warp' needs a face-aligned portrait (align='face')")
        super().__init__(portrait, recon, **kwargs)
        from rtavatar.data.landmarks import raw_features
        from rtavatar.data.warp import PHOTO_INTERIOR, PartedLips, PhotoAnimator, _frame

        x0, y0, side = portrait.box
        res = recon.shape[0]
        # The photo's own lip gap: the reader's change from the portrait is added to it.
        self.rest = float(raw_features(portrait.landmarks)[2])
        self.reader: MouthReader | ExpertMouthReader
        if head is not None:
            self.reader = ExpertMouthReader(recon, head, gain)
        else:
            self.reader = MouthReader(recon, (portrait.landmarks - np.array([x0, y0], np.float64)) * (res / side), gain)
        pts = portrait.landmarks
        _, _, _, iod = _frame(pts)
        c = pts[[48, 54, 51, 57]].mean(0)
        self.sq = max(int(round(2.4 * iod)), 16)
        self.sx, self.sy = int(round(c[0] - self.sq / 2)), int(round(c[1] - self.sq / 2 + 0.2 * iod))
        h, w = self.base.shape[:2]
        self.sq_dst = (max(0, self.sy), min(h, self.sy + self.sq), max(0, self.sx), min(w, self.sx + self.sq))
        square = box_pixels(self.base, (self.sx, self.sy, self.sq))
        local = pts - np.array([self.sx, self.sy], np.float64)
        self.animator = PhotoAnimator(square, local, interior=PHOTO_INTERIOR)
        # Lips parted in the photo (a smile over teeth) close when the model's mouth is closed.
        self.parted = PartedLips(square, local) if self.rest >= PARTED_REST else None
        self.close_lips, self.ramp = close_lips, close_ramp
        self.opening = 0.0  # the last frame's opening, relative to the photo's own gap
        # Renders depend only on the opening: cached per `step` IOD (a pixel or less at 1,024 px).
        self.step, self.cache, self._renders = step, cache, {}  # type: ignore[var-annotated]

    def _render(self, gap: float) -> np.ndarray:
        """The mouth square with the photo's lips at inner-lip gap `gap` (IOD)."""
        from rtavatar.data.warp import Pose

        key = int(round((gap - self.rest) / self.step))  # steps from the photo's own gap
        if key not in self._renders:
            if len(self._renders) >= self.cache:
                self._renders.pop(next(iter(self._renders)))
            if self.parted is not None:
                moved = (self.parted.close(min(-key * self.step / self.rest, 1.0)) if key < 0 else
                         self.parted.open(key * self.step))
                self._renders[key] = np.clip(moved + 0.5, 0, 255).astype(np.uint8)
            else:
                self._renders[key] = self.animator.render(Pose(mouth_open=self.rest + key * self.step))
        return self._renders[key]

    def gap(self, opening: float) -> float | None:
        """The inner-lip gap (IOD) shown for a reading `opening` (None: the photo as it is).

        The reading is a change from the portrait, so it adds to the photo's own gap; but lips
        the photo shows parted (`parted`) close as the reading falls to 0, over `ramp` IOD
        (unless `close_lips` is off).
        """
        if self.parted is None or not self.close_lips:
            return None if opening < 0.01 else self.rest + opening
        return opening + self.rest * min(opening / self.ramp, 1.0)

    def _speaking(self) -> bool:
        return self.opening > 0.03

    def _mouth(self, out: np.ndarray, face: np.ndarray) -> None:
        self.opening = max(self.reader(face), 0.0)
        gap = self.gap(self.opening)
        if gap is None:
            return
        rendered = self._render(gap)
        dy0, dy1, dx0, dx1 = self.sq_dst
        sy, sx = dy0 - self.sy, dx0 - self.sx
        out[dy0:dy1, dx0:dx1] = rendered[sy : sy + dy1 - dy0, sx : sx + dx1 - dx0]


def make_paste(portrait: Portrait, mode: str, recon: np.ndarray | None = None,  # noqa: ANN201 - frame -> picture
               warp_gain: float = 1.0, reader: Any = None, head_motion: float = 1.0, close_lips: bool = True):
    """The compositor for `mode` (PASTE_MODES); `photo` and `warp` need the model's reconstruction of the
    portrait, `warp` the model's reader gain (its InferenceConfig.warp_gain) and aperture head if it has one
    (Bundle.reader). `head_motion` scales the photo modes' HeadMotion (0: a still head); `close_lips=False`
    keeps the rest of a photo whose lips are parted (LipWarpPaste)."""
    if mode not in PASTE_MODES:
        raise RTAvatarError(f"unknown paste mode {mode!r}; use {' or '.join(PASTE_MODES)}")
    if mode == "face" or recon is None:
        return PasteBack(portrait)
    if mode == "warp" and portrait.landmarks is not None:
        return LipWarpPaste(portrait, recon, gain=warp_gain, head=reader, head_motion=head_motion, close_lips=close_lips)
    return PhotoPaste(portrait, recon, head_motion=head_motion)
