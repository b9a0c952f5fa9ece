"""dlib's 68 landmarks by name, the face's axes, and the geometry measured on them.

The iBUG 68-point scheme (0-based): jaw 0-16 (8 = chin), brows 17-26 (17-21 image left),
nose 27-35 (30 = tip), eyes 36-41 (image left = the subject's right) and 42-47, outer lips
48-59 (48/54 = corners), inner lips 60-67 (62/66 = top/bottom centre). Everything in this
package names the points through these constants; distances are in inter-ocular distances
(IOD), the distance between the two eyes' centres.
"""

from __future__ import annotations

import numpy as np

JAW = slice(0, 17)
CHIN = 8
BROWS = slice(17, 27)
NOSE_TIP, NOSE_BOTTOM = 30, 33
EYE_LEFT, EYE_RIGHT = slice(36, 42), slice(42, 48)  # image left (the subject's right eye), image right
EYE_LEFT_START, EYE_RIGHT_START = 36, 42  # each eye: corner, two upper-lid points, corner, two lower-lid points
EYES = slice(36, 48)
MOUTH = slice(48, 68)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54  # the outer corners
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 51, 57
INNER_LIPS = slice(60, 68)
INNER_LEFT, INNER_RIGHT, INNER_TOP, INNER_BOTTOM = 60, 64, 62, 66
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points, image left to right
UPPER_OUTER, LOWER_OUTER = (49, 50, 51, 52, 53), (59, 58, 57, 56, 55)
# Lip contours corner to corner (image left to right), for per-column curves.
UPPER_OUTER_CONTOUR = (48, 49, 50, 51, 52, 53, 54)
UPPER_INNER_CONTOUR = (48, 60, 61, 62, 63, 64, 54)
LOWER_INNER_CONTOUR = (48, 60, 67, 66, 65, 64, 54)
LOWER_OUTER_CONTOUR = (48, 59, 58, 57, 56, 55, 54)

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 luma weights


def smoothstep(k: np.ndarray) -> np.ndarray:
    """3k^2 - 2k^3 of a weight already clipped to [0, 1]: a ramp without a visible seam."""
    return k * k * (3 - 2 * k)


def eye_centres(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres of (..., 68, 2) landmarks (the pupils are not among them)."""
    return pts[..., EYE_LEFT, :].mean(-2), pts[..., EYE_RIGHT, :].mean(-2)


def face_axes(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Eye midpoint, unit eye-line axis, unit down axis and IOD of (68, 2) landmarks."""
    le, re_ = eye_centres(pts)
    d = re_ - le
    iod = float(np.linalg.norm(d))
    e = d / max(iod, 1e-6)
    return (le + re_) / 2, e, np.array([-e[1], e[0]]), iod


# Columns of raw_features (all in IOD, roll-corrected; angles in degrees).
FEATURES = ("iod", "roll", "mouth_gap", "mouth_w", "corner_lift", "brow_h", "ear_l", "ear_r", "nose_dx", "nose_dy",
            "eye_mouth")


def raw_features(pts: np.ndarray) -> np.ndarray:
    """Per-frame geometric features (see FEATURES) of (..., 68, 2) landmarks."""
    pts = np.asarray(pts, np.float64)
    le, re_ = eye_centres(pts)
    d = re_ - le
    iod_ = np.linalg.norm(d, axis=-1)
    roll = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    # Rotate into the upright face frame around the eye midpoint, scale to IOD.
    c, s = d[..., 0] / iod_, d[..., 1] / iod_
    mid = (le + re_) / 2
    rel = pts - mid[..., None, :]
    u = np.stack([rel[..., 0] * c[..., None] + rel[..., 1] * s[..., None],
                  -rel[..., 0] * s[..., None] + rel[..., 1] * c[..., None]], -1) / iod_[..., None, None]
    x, y = u[..., 0], u[..., 1]
    gap = np.mean([y[..., b] - y[..., a] for a, b in INNER_PAIRS], axis=0).clip(min=0)
    L, R = MOUTH_LEFT, MOUTH_RIGHT
    mouth_w = np.hypot(x[..., R] - x[..., L], y[..., R] - y[..., L])
    lip_mid = (y[..., UPPER_LIP_TOP] + y[..., LOWER_LIP_BOTTOM] + y[..., INNER_TOP] + y[..., INNER_BOTTOM]) / 4
    corner_lift = lip_mid - (y[..., L] + y[..., R]) / 2  # + when the corners are above the lip centre
    brow_h = -(y[..., BROWS].mean(-1))  # brows above the eye line
    ear = lambda e: (np.abs(y[..., e + 1] - y[..., e + 5]) + np.abs(y[..., e + 2] - y[..., e + 4])) / (  # noqa: E731
        2 * np.abs(x[..., e + 3] - x[..., e]))
    mouth_y = (y[..., L] + y[..., R]) / 2
    axis_x = (x[..., L] + x[..., R]) / 2 / 2  # the face's midline, halfway from eye midpoint to mouth centre
    nose_dx = x[..., NOSE_TIP] - axis_x
    nose_dy = y[..., NOSE_TIP] / np.maximum(mouth_y, 1e-6)  # tip height as a fraction of eyes->mouth
    # Subject's left eye is image right (42-47).
    return np.stack([iod_, roll, gap, mouth_w, corner_lift, brow_h, ear(EYE_RIGHT_START), ear(EYE_LEFT_START), nose_dx,
                     nose_dy, mouth_y], -1)


def face_frame(pts: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks -> the same points in each frame's face axes (origin the eye
    midpoint, x along the eye line, y down), in IOD; rows with a NaN stay NaN."""
    pts = np.asarray(pts, np.float64)
    le, re_ = eye_centres(pts)
    d = re_ - le
    iod = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
    e = d / iod
    n = np.stack([-e[..., 1], e[..., 0]], -1)
    rel = pts - ((le + re_) / 2)[..., None, :]
    return np.stack([(rel * e[..., None, :]).sum(-1), (rel * n[..., None, :]).sum(-1)], -1) / iod[..., None]


def inner_gap(pts: np.ndarray) -> float:
    """The inner-lip gap of (68, 2) landmarks, in IOD (raw_features' `mouth_gap`)."""
    return float(raw_features(pts)[FEATURES.index("mouth_gap")])
