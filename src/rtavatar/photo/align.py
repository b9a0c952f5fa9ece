"""Finding and framing the face: dlib's detector and 68 landmarks, the training framing, and
the registration of a loose photo (`register` -> `Portrait`).

dlib's HOG detector and 68-point shape predictor load from the `face-recognition-models`
wheel (no download; core dependencies of the package). We chose dlib over MediaPipe 0.10.21:
MediaPipe pins numpy<2 and protobuf<5 and pulls jax (~1 GB), while dlib-bin is a small wheel,
finds one face in 2-10 ms at 256 px on this machine and gives the 68 points our controls need.

Alignment (`align="face"`, the default) crops the face the way every training crop is
framed (eye line, inter-ocular and eye-mouth distances: EYE_Y, IOD_FRAC, EYE_MOUTH_FRAC), the
same framing as `rtavatar prepare`. A photo with no face is refused; with several faces the
largest is animated (a warning names how many were found). `align="center"` takes the centre
square as it is, for pictures that already are face crops (the synthetic data, `prepare`
output). A picture whose shorter side is under `MIN_PICTURE` px is first enlarged (Lanczos)
to that, so no output is a thumbnail.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rtavatar.errors import RTAvatarError
from rtavatar.photo.landmarks import MOUTH_LEFT, MOUTH_RIGHT, eye_centres

log = logging.getLogger(__name__)
ALIGNS = ("face", "center")
MIN_PICTURE = 256  # px, the shorter side of the picture a portrait is registered (and pasted back) in


class FaceModelsMissing(RTAvatarError):
    """dlib or its model files are not installed."""


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    # find_spec does not run the package's __init__ (which imports the removed pkg_resources).
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing("face landmarks need dlib and its models: pip install dlib-bin face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels

    @property
    def size(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceAnalyzer:
    """dlib HOG detection on a downscaled copy, landmarks on the full-resolution frame."""

    def __init__(self, detect_side: int = 480) -> None:
        try:
            import dlib
        except ImportError as e:
            raise FaceModelsMissing("face landmarks need dlib: pip install dlib-bin face-recognition-models") from e
        path = _models_dir() / "shape_predictor_68_face_landmarks.dat"
        if not path.is_file():
            raise FaceModelsMissing(f"{path} is missing: reinstall face-recognition-models")
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.detect_side = detect_side

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_side / max(h, w))
        small = image
        if scale < 1.0:
            small = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        # Upsample once when the image is small: HOG's smallest face is ~80 px.
        rects = self.detector(small, 1 if max(small.shape[:2]) < 400 else 0)
        faces = [Face((r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)) for r in rects]
        return sorted(faces, key=lambda f: -f.size)

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(68, 2) float32 landmark x, y in image pixels."""
        r = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(image, r)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


_SHARED: FaceAnalyzer | None = None


def shared_analyzer() -> FaceAnalyzer:
    """One FaceAnalyzer per process (dlib's models take ~100 MB and a second to load)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = FaceAnalyzer()
    return _SHARED


def landmark_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    """A detector-like box around landmarks (to track between detections)."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    pad = 0.1 * (x1 - x0)
    return (float(x0 - pad), float(y0 - pad), float(x1 + pad), float(y1))


# The framing of every training crop (synthetic and `prepare`d): eye line at EYE_Y of the crop
# from the top, inter-ocular distance IOD_FRAC of the side, eye midpoint to mouth centre
# EYE_MOUTH_FRAC of the side (measured on the synthetic renderer).
EYE_Y, IOD_FRAC, EYE_MOUTH_FRAC = 0.384, 0.186, 0.217


def face_crop_box(points: np.ndarray, eye_y: float = EYE_Y, iod_frac: float = IOD_FRAC,
                  eye_mouth_frac: float = EYE_MOUTH_FRAC) -> np.ndarray:
    """(N, 68, 2) landmarks -> (N, 3) square crop centre x, y and side (image pixels)."""
    le, re_ = eye_centres(np.asarray(points))
    eye_mid = (le + re_) / 2
    mouth = (points[:, MOUTH_LEFT] + points[:, MOUTH_RIGHT]) / 2
    iod = np.linalg.norm(re_ - le, axis=-1)
    side = (iod / iod_frac + np.linalg.norm(mouth - eye_mid, axis=-1) / eye_mouth_frac) / 2
    cx = (eye_mid[:, 0] + mouth[:, 0]) / 2
    cy = eye_mid[:, 1] + (0.5 - eye_y) * side
    return np.stack([cx, cy, side], 1)


def crop_frame(frame: np.ndarray, cx: float, cy: float, side: float, resolution: int) -> np.ndarray:
    """Square crop (edge-padded where it leaves the frame) resized to resolution."""
    s = max(int(round(side)), 8)
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    img = Image.fromarray(frame[y0 : y0 + s, x0 : x0 + s])
    return np.array(img.resize((resolution, resolution), Image.BICUBIC if s < resolution else Image.LANCZOS))


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
