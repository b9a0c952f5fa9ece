"""Portrait registration: find the face in a loose photo, crop it the way the training data is
framed, and composite generated faces back into the original picture.

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
_ANALYZER = None  # dlib models, loaded once per process (~100 MB)


@dataclass
class Portrait:
    """A registered photo: the aligned face crop, and where it sits in the original."""

    image: np.ndarray  # the original picture (H, W, 3) uint8
    face: np.ndarray  # the aligned crop (R, R, 3) uint8: what the model animates
    box: tuple[int, int, int]  # x0, y0, side of the crop in original pixels (may leave the picture)
    faces_found: int = 1


def _analyzer():  # noqa: ANN202 - dlib-backed FaceAnalyzer
    global _ANALYZER
    if _ANALYZER is None:
        from rtavatar.data.landmarks import FaceAnalyzer

        _ANALYZER = FaceAnalyzer()
    return _ANALYZER


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
    from rtavatar.data.landmarks import crop_frame, face_crop_box

    fa = _analyzer()
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
    return Portrait(image, crop_frame(image, x0 + side / 2, y0 + side / 2, side, resolution), (x0, y0, side), len(faces))


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
