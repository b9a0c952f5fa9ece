"""Landmark-driven animation of a face photo.

A photo's 68 dlib landmarks are moved to where a `Pose` puts them: the inner lips part by
`mouth_open` inter-ocular distances (IOD; 40 % up / 60 % down, as the procedural renderer), the
jaw follows the lower lip, the corners widen, round and lift (smile), the eyelids close, the
brows rise, features shift with yaw / pitch by their depth, and the head rolls about the neck.
`PhotoAnimator` then resamples the photo through a thin-plate spline fitted to those moves (a
backward map: output pixel -> photo pixel), with fixed anchors on the crop border and a ring
around the head that follows only the head pose, and draws the mouth interior a closed-mouth
photo does not have (photo/mouth.py). Used by the synthetic data's photo clips (data/photos.py)
and by the photo renderer's paste mode `warp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rtavatar.models.motion import MOTION_POINTS
from rtavatar.photo.geometry import border_points, tps_backward_map, warp_image, warp_rows
from rtavatar.photo.landmarks import BROWS, INNER_PAIRS, LOWER_OUTER, MOUTH, MOUTH_LEFT, MOUTH_RIGHT, UPPER_OUTER, face_axes
from rtavatar.photo.lids import blink_map
from rtavatar.photo.mouth import CLIP_INTERIOR, Interior, draw_mouth_interior, face_light


def width_factor(mouth_width, mouth_round, smile):  # noqa: ANN001, ANN201 (floats, arrays or tensors)
    """How much wider than at rest a drawn (or warped) mouth is: visemes widen or narrow it,
    rounding narrows it, a smile widens it (a frown only bends it). The one formula the renderer,
    the photo warp and training's width targets share; works on floats, arrays and tensors."""
    return 1 + mouth_width - 0.35 * mouth_round + 0.12 * smile * (smile > 0)



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
    # A MotionNet's (P, 2) offsets of models.motion.MOTION_POINTS from the photo's mouth at rest
    # (face axes, IOD): when given, they move lips and jaw instead of mouth_open.
    mouth_shape: np.ndarray | None = None


def target_landmarks(pts: np.ndarray, p: Pose, open_mouth: bool = True) -> np.ndarray:
    """Where `p` moves the photo's (68, 2) landmarks (pixels); `open_mouth=False` leaves the
    lips' opening (and the jaw) as they are and moves only width, smile, brows and pose."""
    m, e, n, iod = face_axes(pts)
    L = np.stack([(pts - m) @ e, (pts - m) @ n], 1) / iod  # face frame, IOD units, y down
    T = L.copy()
    c = (L[MOUTH_LEFT] + L[MOUTH_RIGHT]) / 2
    w0 = max((L[MOUTH_RIGHT, 0] - L[MOUTH_LEFT, 0]) / 2, 1e-3)
    # Width: relative change, rounding narrows, smiling widens (the renderer's formula).
    k = width_factor(p.mouth_width, p.mouth_round, p.smile)
    T[MOUTH, 0] = c[0] + (L[MOUTH, 0] - c[0]) * k
    t = np.clip((L[MOUTH, 0] - c[0]) / w0, -1.2, 1.2)
    T[MOUTH, 1] -= p.smile * 0.09 * t * t  # corners rise on a smile, fall on a frown
    if p.mouth_shape is not None:
        T[list(MOTION_POINTS)] += np.asarray(p.mouth_shape, np.float64)
    elif open_mouth:
        _open(L, T, p, c, w0)
    T[BROWS, 1] -= 0.08 * p.brow_raise
    if p.brow_raise < 0:  # a frown draws the inner brows down and together
        for i, s in ((20, 1), (21, 1), (22, -1), (23, -1)):
            T[i] += np.array([0.03 * s, 0.04]) * -p.brow_raise
    T = _pose(T, p, _DEPTH)
    return m + iod * (T[:, :1] * e + T[:, 1:] * n)


def _open(L: np.ndarray, T: np.ndarray, p: Pose, c: np.ndarray, w0: float) -> None:
    """Opening (in place on T): per inner column, the gap the lens-shaped profile asks for minus
    the photo's; the outer lips and the jaw follow."""
    cols, deltas = [-1.0], [0.0]
    for u, lo in INNER_PAIRS:
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
    for i in UPPER_OUTER:
        T[i, 1] -= 0.4 * delta_at(L[i, 0])
    for i in LOWER_OUTER:
        T[i, 1] += 0.6 * delta_at(L[i, 0])
    drop = 0.6 * deltas[2]  # the centre column's lower-lip drop
    for i, f in _JAW_FOLLOW.items():
        T[i, 1] += f * drop


def eye_closure(p: Pose) -> tuple[float, float]:
    """Closure of the image-left and image-right eye (0 open, 1 shut, < 0 wider than the photo)."""
    return (1 - float(np.clip(p.eye_open_r * (1 - p.blink), 0.0, 1.4)),  # image left is the subject's right eye
            1 - float(np.clip(p.eye_open_l * (1 - p.blink), 0.0, 1.4)))


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
    m, e, n, iod = face_axes(pts)
    a = np.linspace(0, 2 * np.pi, n_pts, endpoint=False)
    ring = np.stack([1.7 * np.cos(a), 0.9 + 2.1 * np.sin(a)], 1)
    moved = _pose(ring, p, 0.0)
    to_px = lambda q: m + iod * (q[:, :1] * e + q[:, 1:] * n)  # noqa: E731
    return to_px(ring), to_px(moved)


class PhotoAnimator:
    """Animates one aligned face photo: `render(pose)` -> the warped frame at `out_res`.

    `image` is the aligned crop (S, S, 3) uint8 and `pts` its 68 landmarks in crop pixels;
    the warp runs at S and the result is area-averaged to `out_res` (S = 2 x out_res gives
    anti-aliased edges). `teeth_rgb`: the drawn teeth's colour (mouth.draw_mouth_interior).
    """

    def __init__(self, image: np.ndarray, pts: np.ndarray, out_res: int | None = None,
                 tint: tuple[float, float, float] = (1.0, 1.0, 1.0), interior: Interior = CLIP_INTERIOR,
                 teeth_rgb: np.ndarray | None = None) -> None:
        self.image = np.asarray(image)
        self.pts = np.asarray(pts, np.float64)
        self.side = self.image.shape[0]
        self.out_res = out_res or self.side
        self.border = border_points(self.side)
        self.light = face_light(self.image, self.pts)
        self.tint, self.interior, self.teeth_rgb = tint, interior, teeth_rgb

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
        draw_mouth_interior(out, T, self.light, self.tint, self.interior, self.teeth_rgb)
        if self.out_res != self.side:
            x = torch.from_numpy(out).permute(2, 0, 1)[None]
            out = F.interpolate(x, size=(self.out_res, self.out_res), mode="area")[0].permute(1, 2, 0).numpy()
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

