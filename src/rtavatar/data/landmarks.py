"""The expression controls derived from 68-point landmarks (detection, framing and the raw
features themselves are the photo layer's: photo/align.py, photo/landmarks.py).

`raw_features` measures geometry in inter-ocular distances (IOD) in a roll-corrected frame;
`controls_from_features` turns a segment's features into the named controls of docs/DATA.md.
The slopes below were fitted on the synthetic renderer (`calibrate()` re-measures them), so
prepared real data and synthetic data share units as far as 68 points allow.
"""

from __future__ import annotations

import logging

import numpy as np

# Detection, framing and features live in the photo layer (the engine registers photos with them).
from rtavatar.photo.align import (EYE_MOUTH_FRAC, EYE_Y, IOD_FRAC, Face, FaceAnalyzer, FaceModelsMissing,  # noqa: F401
                                  _models_dir, crop_frame, face_crop_box, landmark_box, shared_analyzer)
from rtavatar.photo.landmarks import FEATURES, eye_centres, raw_features  # noqa: F401

log = logging.getLogger(__name__)

# Raw feature -> control slopes, measured by calibrate(20) on synthetic renders at 256 px.
SMILE_PER_LIFT = 1.0 / 0.017  # corner lift (IOD) at smile = 1
YAW_DEG_PER_OFFSET = 15.0 / 0.110  # nose-tip offset from the face axis (IOD) at 15 deg yaw
PITCH_DEG_PER_DROP = 10.0 / 0.044  # nose-tip height change (IOD) at 10 deg pitch
# dlib does not follow the renderer's thin cartoon brows (calibrate() measures ~0), so this
# slope is an estimate for human faces: a full brow raise lifts the brows by ~0.08 IOD.
BROW_PER_RAISE = 1.0 / 0.08


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
