"""Portrait registration: find the face in a loose photo, crop it the way the training data is
framed, and composite generated faces back into the original picture.

Two composites (`PASTE_MODES`). `face` pastes the whole generated face (for pictures that
are the model's own kind: synthetic or prepared crops). `photo`, the default for photos,
keeps the photo's own pixels wherever the face did not move (see `PhotoPaste`): the model's
128 px face is far softer than a photo, and a pasted 128 px face is what makes other
systems' photos look like blurred cartoons.

Alignment (`align="face"`, the default) uses dlib's detector and 68 landmarks, the same
framing as `rtavatar prepare` (data/landmarks.py: eye line, inter-ocular and eye-mouth
distances). A photo with no face is refused; with several faces the largest is animated (a
warning names how many were found). `align="center"` takes the centre square as it is, for
pictures that already are face crops (the synthetic data, `prepare` output).

Paste-back resizes each generated face to its box in the original picture and blends it in
through a feathered mask, so the output keeps the photo's own framing and resolution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rtavatar.errors import RTAvatarError

log = logging.getLogger(__name__)
ALIGNS = ("face", "center")
PASTE_MODES = ("photo", "face")


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


def register(image: np.ndarray, resolution: int, align: str = "face", name: str = "portrait") -> Portrait:
    """Align a photo for a model of `resolution` px (see the module docstring)."""
    if align not in ALIGNS:
        raise RTAvatarError(f"unknown align {align!r}; use {' or '.join(ALIGNS)}")
    h, w = image.shape[:2]
    if align == "center":
        s = min(h, w)
        return Portrait(image, center_crop(image, resolution), ((w - s) // 2, (h - s) // 2, s))
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

    def __call__(self, face: np.ndarray) -> np.ndarray:
        """(R, R, 3) generated face -> (H, W, 3) picture."""
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


class PhotoPaste:
    """Composites generated faces into a photo, keeping the photo's own pixels where nothing moved.

    With the photo P (the crop box at its own resolution), the model's reconstruction of its
    portrait R and a generated frame G (both upsampled), inside the lower-face mask M:

        out = P + M * (G - R - (1 - w) * D),   D = P - R - lowpass(P - R)

    where w -> 1 where G equals R (nothing moved: out is the photo itself, sharp) and w -> 0
    where the face changed (an open mouth: out is G plus the photo's low-frequency colour, so
    the generated mouth matches the photo's lighting). Outside M the photo is untouched but for
    blinks: with landmarks, the photo's own eyelids close by a warp (data/warp.py) about
    `blinks_per_minute` times a minute (seeded), so a photo avatar never stares.
    """

    def __init__(self, portrait: Portrait, recon: np.ndarray, tau: float = 18.0, blinks_per_minute: float = 15.0,
                 seed: int = 0) -> None:
        self.base = portrait.image
        x0, y0, side = portrait.box
        self.side, self.tau = side, tau
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
        self.eyes = None if portrait.landmarks is None or blinks_per_minute <= 0 else self._eye_band(portrait.landmarks)
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

    def __call__(self, face: np.ndarray) -> np.ndarray:
        """(R, R, 3) generated face -> (H, W, 3) picture."""
        change = torch.from_numpy(np.abs(face.astype(np.float32) - self.recon).mean(-1))[None]
        w = (1 - _blur(change, 1.0) / self.tau).clamp(0, 1)
        w = self._up(w, "bilinear")
        delta = (self._up(face) - self.Rb - (1 - w) * self.detail).permute(1, 2, 0).numpy()
        out = self.base.copy()
        if self.eyes is not None:
            c = self._blink()
            self.frame += 1
            if c > 0:
                from rtavatar.data.warp import paint_blink

                (ey0, ey1, ex0, ex1), pts = self.eyes
                band = paint_blink(self.base[ey0:ey1, ex0:ex1], pts, (c, c))
                out[ey0:ey1, ex0:ex1] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        dy0, dy1, dx0, dx1 = self.dst
        out[dy0:dy1, dx0:dx1] = np.clip(self.under + self.mask * delta + 0.5, 0, 255).astype(np.uint8)
        return out


def make_paste(portrait: Portrait, mode: str, recon: np.ndarray | None = None):  # noqa: ANN201 - a frame -> picture callable
    """The compositor for `mode` (PASTE_MODES); `photo` needs the model's reconstruction of the portrait."""
    if mode not in PASTE_MODES:
        raise RTAvatarError(f"unknown paste mode {mode!r}; use {' or '.join(PASTE_MODES)}")
    if mode == "face" or recon is None:
        return PasteBack(portrait)
    return PhotoPaste(portrait, recon)
