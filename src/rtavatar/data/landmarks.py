"""Face detection, 68-point landmarks, and the expression controls derived from them.

dlib's HOG detector and 68-point shape predictor, loaded from the `face-recognition-models`
wheel (no download; core dependencies of the package). We chose dlib over MediaPipe 0.10.21:
MediaPipe pins numpy<2 and protobuf<5 and pulls jax (~1 GB), while dlib-bin is a small wheel,
finds one face in 2-10 ms at 256 px on this machine and gives the 68 points our controls need.

Landmarks are the iBUG 68-point scheme (0-based): jaw 0-16, brows 17-26 (17-21 image left),
nose 27-35 (30 = tip), eyes 36-41 (image left = the subject's right) and 42-47, outer lips
48-59 (48/54 = corners), inner lips 60-67 (62/66 = top/bottom centre).

`raw_features` measures geometry in inter-ocular distances (IOD) in a roll-corrected frame;
`controls_from_features` turns a segment's features into the named controls of docs/DATA.md.
The slopes below were fitted on the synthetic renderer (`calibrate()` re-measures them), so
prepared real data and synthetic data share units as far as 68 points allow.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtavatar.errors import RTAvatarError

log = logging.getLogger(__name__)

# Raw feature -> control slopes, measured by calibrate(20) on synthetic renders at 256 px.
SMILE_PER_LIFT = 1.0 / 0.017  # corner lift (IOD) at smile = 1
YAW_DEG_PER_OFFSET = 15.0 / 0.110  # nose-tip offset from the face axis (IOD) at 15 deg yaw
PITCH_DEG_PER_DROP = 10.0 / 0.044  # nose-tip height change (IOD) at 10 deg pitch
# dlib does not follow the renderer's thin cartoon brows (calibrate() measures ~0), so this
# slope is an estimate for human faces: a full brow raise lifts the brows by ~0.08 IOD.
BROW_PER_RAISE = 1.0 / 0.08


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
            from PIL import Image

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


def eye_centres(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres; the pupils are not among the 68 points."""
    return pts[36:42].mean(0), pts[42:48].mean(0)


# The framing of every training crop (synthetic and `prepare`d): eye line at EYE_Y of the crop
# from the top, inter-ocular distance IOD_FRAC of the side, eye midpoint to mouth centre
# EYE_MOUTH_FRAC of the side (measured on the synthetic renderer).
EYE_Y, IOD_FRAC, EYE_MOUTH_FRAC = 0.384, 0.186, 0.217


def face_crop_box(points: np.ndarray, eye_y: float = EYE_Y, iod_frac: float = IOD_FRAC,
                  eye_mouth_frac: float = EYE_MOUTH_FRAC) -> np.ndarray:
    """(N, 68, 2) landmarks -> (N, 3) square crop centre x, y and side (image pixels)."""
    le, re_ = eye_centres(np.asarray(points).transpose(1, 0, 2))
    eye_mid = (le + re_) / 2
    mouth = (points[:, 48] + points[:, 54]) / 2
    iod = np.linalg.norm(re_ - le, axis=-1)
    side = (iod / iod_frac + np.linalg.norm(mouth - eye_mid, axis=-1) / eye_mouth_frac) / 2
    cx = (eye_mid[:, 0] + mouth[:, 0]) / 2
    cy = eye_mid[:, 1] + (0.5 - eye_y) * side
    return np.stack([cx, cy, side], 1)


def crop_frame(frame: np.ndarray, cx: float, cy: float, side: float, resolution: int) -> np.ndarray:
    """Square crop (edge-padded where it leaves the frame) resized to resolution."""
    from PIL import Image

    s = max(int(round(side)), 8)
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        frame = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x0, y0 = x0 + pad, y0 + pad
    img = Image.fromarray(frame[y0 : y0 + s, x0 : x0 + s])
    return np.array(img.resize((resolution, resolution), Image.BICUBIC if s < resolution else Image.LANCZOS))


# Columns of raw_features (all in IOD, roll-corrected; angles in degrees).
FEATURES = ("iod", "roll", "mouth_gap", "mouth_w", "corner_lift", "brow_h", "ear_l", "ear_r", "nose_dx", "nose_dy",
            "eye_mouth")


def raw_features(pts: np.ndarray) -> np.ndarray:
    """Per-frame geometric features (see FEATURES) of (..., 68, 2) landmarks."""
    pts = np.asarray(pts, np.float64)
    le, re_ = pts[..., 36:42, :].mean(-2), pts[..., 42:48, :].mean(-2)
    d = re_ - le
    iod = np.linalg.norm(d, axis=-1)
    roll = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    # Rotate into the upright face frame around the eye midpoint, scale to IOD.
    c, s = d[..., 0] / iod, d[..., 1] / iod
    mid = (le + re_) / 2
    rel = pts - mid[..., None, :]
    u = np.stack([rel[..., 0] * c[..., None] + rel[..., 1] * s[..., None],
                  -rel[..., 0] * s[..., None] + rel[..., 1] * c[..., None]], -1) / iod[..., None, None]
    x, y = u[..., 0], u[..., 1]
    gap = np.mean([y[..., b] - y[..., a] for a, b in ((61, 67), (62, 66), (63, 65))], axis=0).clip(min=0)
    mouth_w = np.hypot(x[..., 54] - x[..., 48], y[..., 54] - y[..., 48])
    lip_mid = (y[..., 51] + y[..., 57] + y[..., 62] + y[..., 66]) / 4
    corner_lift = lip_mid - (y[..., 48] + y[..., 54]) / 2  # + when the corners are above the lip centre
    brow_h = -(y[..., 17:27].mean(-1))  # brows above the eye line
    ear = lambda e: (np.abs(y[..., e + 1] - y[..., e + 5]) + np.abs(y[..., e + 2] - y[..., e + 4])) / (  # noqa: E731
        2 * np.abs(x[..., e + 3] - x[..., e]))
    mouth_y = (y[..., 48] + y[..., 54]) / 2
    axis_x = (x[..., 48] + x[..., 54]) / 2 / 2  # the face's midline, halfway from eye midpoint to mouth centre
    nose_dx = x[..., 30] - axis_x
    nose_dy = y[..., 30] / np.maximum(mouth_y, 1e-6)  # tip height as a fraction of eyes->mouth
    # Subject's left eye is image right (42-47).
    return np.stack([iod, roll, gap, mouth_w, corner_lift, brow_h, ear(42), ear(36), nose_dx, nose_dy, mouth_y], -1)


def controls_from_features(f: np.ndarray) -> dict[str, np.ndarray]:
    """Named per-frame controls (docs/DATA.md units) of a segment's (N, len(FEATURES)) features.

    Quantities without an absolute zero in 2-D landmarks (mouth width, smile, brows, eye
    openness, pitch) are measured against the segment's median, i.e. the person's usual face
    in this segment is neutral; yaw and roll are absolute (faces are near symmetric).
    """
    col = {k: f[:, i] for i, k in enumerate(FEATURES)}
    med = {k: float(np.median(v)) for k, v in col.items()}
    ear_ref = lambda k: max(float(np.percentile(col[k], 75)), 1e-3)  # noqa: E731  # blinks pull the median down
    return {
        "mouth_open": col["mouth_gap"],
        "mouth_width": col["mouth_w"] / max(med["mouth_w"], 1e-6) - 1.0,
        "smile": (col["corner_lift"] - med["corner_lift"]) * SMILE_PER_LIFT,
        "brow_raise": (col["brow_h"] - med["brow_h"]) * BROW_PER_RAISE,
        "eye_open_l": col["ear_l"] / ear_ref("ear_l"),
        "eye_open_r": col["ear_r"] / ear_ref("ear_r"),
        "yaw": col["nose_dx"] * YAW_DEG_PER_OFFSET,
        "pitch": (col["nose_dy"] - med["nose_dy"]) * col["eye_mouth"] * PITCH_DEG_PER_DROP,
        "roll": col["roll"],
    }


def calibrate(n_identities: int = 12, resolution: int = 256) -> dict[str, float]:
    """Re-measure the feature slopes on synthetic renders (the constants above come from this).

    For each identity, render neutral and one control moved (smile 1, brow_raise 1, yaw 15,
    pitch 10), and average the landmark feature change over the identities dlib finds.
    """
    from rtavatar.data.face import FaceState, Renderer, sample_identity

    fa = FaceAnalyzer()
    moves = {"corner_lift": ("smile", 1.0, 4), "brow_h": ("brow_raise", 1.0, 5), "nose_dx": ("yaw", 15.0, 8),
             "nose_dy": ("pitch", 10.0, 9)}
    deltas: dict[str, list[float]] = {k: [] for k in moves}
    for i in range(n_identities):
        r = Renderer(sample_identity(i), resolution)

        def feat(**kw: float) -> np.ndarray | None:
            img = r.render(FaceState(**kw))
            faces = fa.detect(img)
            return raw_features(fa.landmarks(img, faces[0].box)) if faces else None

        base = feat()
        for k, (ctrl, val, j) in moves.items():
            moved = feat(**{ctrl: val})
            if base is not None and moved is not None:
                d = moved[j] - base[j]
                deltas[k].append(d * (base[10] if k == "nose_dy" else 1.0))
    return {k: float(np.mean(v)) for k, v in deltas.items() if v}
