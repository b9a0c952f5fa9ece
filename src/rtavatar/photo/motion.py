"""Head and expression motion on a photo: the head sways, tilts and nods (`HeadMotion`), and
smile, brows and eye openness move the photo's own features (`ExpressionWarp`).

Both take a frame's named controls in user units (docs/DATA.md: degrees for yaw / pitch /
roll) and are keyed by the frame's index, so a frame dropped before it was shown moves nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rtavatar.models.conditioning import NEUTRAL
from rtavatar.photo.geometry import Clip, border_points, box_pixels, sample_grid, to_uint8, tps_backward_map, warp_image
from rtavatar.photo.landmarks import NOSE_TIP, face_axes, smoothstep


class ExpressionWarp:
    """Smile, brows and eye openness on the photo itself, from the controls of each frame.

    The model learned these controls on drawn faces, but not on photos (docs/RESULTS.md:
    `smile=1` changed a photo's mouth width by < 1 %). So on a photo they are applied the way
    the photo training clips were made: the photo's landmarks move as photo/animator.py's
    `target_landmarks` puts them (mouth corners out and up, brows up or down; the opening is
    the model's), and a thin-plate spline resamples the composite in a square from above the
    brows to below the chin, its border fixed. Eye openness below 1 closes the lids partly
    (`closure`, painted by the compositor's lids). Values are relative to the neutral face
    (NEUTRAL), which is taken to be the photo's own; a neutral frame costs nothing, and grids
    are cached per value.
    """

    def __init__(self, image_shape: tuple[int, ...], pts: np.ndarray, cache: int = 8) -> None:
        self.pts = np.asarray(pts, np.float64)
        m, _, n, iod = face_axes(self.pts)
        centre = m + 0.45 * iod * n
        self.side = max(int(round(2.8 * iod)), 16)
        self.x0, self.y0 = int(round(centre[0] - self.side / 2)), int(round(centre[1] - self.side / 2))
        self.clip = Clip.of(self.x0, self.y0, self.side, image_shape)
        self.local = self.pts - np.array([self.x0, self.y0], np.float64)
        self.border = border_points(self.side, 7)
        self.cache, self._grids = cache, {}  # type: ignore[var-annotated]

    def _grid(self, smile: float, brow: float) -> torch.Tensor:
        from rtavatar.photo.animator import Pose, target_landmarks

        key = (smile, brow)
        if key not in self._grids:
            if len(self._grids) >= self.cache:
                self._grids.pop(next(iter(self._grids)))
            pose = Pose(smile=smile - NEUTRAL["smile"], brow_raise=brow - NEUTRAL["brow_raise"])
            T = target_landmarks(self.local, pose, open_mouth=False)
            self._grids[key] = tps_backward_map(np.concatenate([T, self.border]), np.concatenate([self.local, self.border]),
                                                self.side)
        return self._grids[key]

    @staticmethod
    def closure(controls: dict[str, float]) -> tuple[float, float]:
        """Lid closure of the image-left and image-right eye (the subject's right, left) from eye openness."""
        return (float(np.clip(1 - controls["eye_open_r"], 0, 1)), float(np.clip(1 - controls["eye_open_l"], 0, 1)))

    def __call__(self, out: np.ndarray, controls: dict[str, float]) -> None:
        """Warp picture `out` (H, W, 3) uint8 in place for a frame's named controls."""
        smile, brow = round(float(controls["smile"]), 2), round(float(controls["brow_raise"]), 2)
        if abs(smile - NEUTRAL["smile"]) < 0.01 and abs(brow - NEUTRAL["brow_raise"]) < 0.01:
            return
        square = box_pixels(out, (self.x0, self.y0, self.side))
        self.clip.paste(out, to_uint8(warp_image(square, self._grid(smile, brow))))


class HeadMotion:
    """Small head motion on a photo: the head sways, tilts and nods by a smooth warp.

    The model's own head motion is all but absent on photos (its training photo clips keep 35 %
    of the behaviour's motion, and a 128 px face is never pasted whole), and a head that never
    moves reads as a still photo with a moving mouth. Each frame the head region (an ellipse
    around the face and hair, weight 1, falling smoothly to 0 over `falloff` of its radius into
    the background) is moved rigidly: rolled about a point below the chin (so the neck barely
    moves) and shifted sideways (yaw: 0.015 IOD a degree) and up or down (pitch: 0.012). A
    turning head is not flat: its nose moves across the eyes and cheeks, so the middle of the
    face (a Gaussian bump around the nose tip, `PARALLAX_SIGMA` IOD) moves a further
    `PARALLAX` IOD a degree, the nose tip's own travel for a nose about 0.7 IOD in front of the
    eyes. The angles are a seeded sum of slow sinusoids of the frame index (0.05-0.4 Hz; std
    `roll`, `yaw`, `pitch` degrees, `amplitude` times), up to 1.6x larger while the avatar
    speaks (the speaking level is smoothed over ~0.5 s of frames), plus the `yaw`, `pitch` and
    `roll` controls; the picture's edges stay put. The default amplitudes give a speaker's
    nose-tip motion against the eye line (docs/RESULTS.md: real speakers on realvid/ move it by
    a median 0.06 IOD, std); a 2-D warp bends what is behind the head by a few pixels at the
    extremes. One bilinear resample of the head's box a frame, the displacement computed on an
    8 px grid (10-25 ms on a 1,024 px photo, 1-2 ms on the bundled 300x400 one).
    """

    SPEAKING_GAIN = 0.6  # sway x (1 + SPEAKING_GAIN) while speaking
    LEVEL_RATE = 0.08  # per frame: the speaking level's smoothing
    PARALLAX, PARALLAX_SIGMA = 0.012, 0.6  # IOD a degree at the nose tip; the bump's radius (IOD)

    def __init__(self, image_shape: tuple[int, ...], pts: np.ndarray, seed: int = 0, amplitude: float = 1.0,
                 roll: float = 1.5, yaw: float = 2.5, pitch: float = 2.0, falloff: float = 0.6) -> None:
        pts = np.asarray(pts, np.float64)
        m, e, n, iod = face_axes(pts)
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
        scale = 2.0 / np.array(self.size)
        self.weight = torch.from_numpy(smoothstep(k)[..., None] * scale).float()
        bump = np.exp(-((xy - pts[NOSE_TIP]) ** 2).sum(-1) / (2 * (self.PARALLAX_SIGMA * iod) ** 2)) * smoothstep(k)
        self.bump = torch.from_numpy(bump[..., None] * scale).float()
        self.rel = torch.from_numpy(xy - self.pivot).float()
        self.grid = sample_grid(0, y1 - y0, 0, x1 - x0, y1 - y0, x1 - x0)
        rng = np.random.default_rng(seed)
        self.waves = {axis: (rng.uniform(0.05, 0.4, 3), rng.uniform(0, 2 * np.pi, 3), std)
                      for axis, std in (("roll", roll), ("yaw", yaw), ("pitch", pitch))}
        self.amplitude = amplitude
        self._levels: dict[int, float] = {}  # the speaking level after each recent frame index

    def level(self, index: int, speaking: bool) -> float:
        """How much the avatar is speaking at frame `index`, smoothed (0..1); kept per index, so a
        frame rendered again after an interrupt continues from the frame before it."""
        prev = self._levels.get(index - 1, self._levels[max(self._levels)] if self._levels else 0.0)
        lvl = prev + (float(speaking) - prev) * self.LEVEL_RATE
        self._levels[index] = lvl
        if len(self._levels) > 256:
            for old in sorted(self._levels)[:-128]:
                del self._levels[old]
        return lvl

    def angles(self, index: int, speaking: bool, controls: dict[str, float] | None = None) -> dict[str, float]:
        """Frame `index`'s roll / yaw / pitch in degrees."""
        gain = 1 + self.SPEAKING_GAIN * self.level(index, speaking)
        t = index / 25.0
        out = {}
        for axis, (f, ph, std) in self.waves.items():
            v = float(np.sum(np.sin(2 * np.pi * f * t + ph))) * std / np.sqrt(1.5)  # unit std for 3 sines
            out[axis] = self.amplitude * gain * v
            if controls is not None:
                out[axis] += float(controls[axis])
        return out

    def __call__(self, out: np.ndarray, index: int, speaking: bool, controls: dict[str, float] | None = None) -> None:
        """Move the head of picture `out` (H, W, 3) uint8 in place."""
        a = self.angles(index, speaking, controls)
        if max(abs(v) for v in a.values()) < 0.02:
            return
        th = np.deg2rad(a["roll"])
        c, s_ = float(np.cos(th)), float(np.sin(th))
        shift = torch.from_numpy(self.iod * (0.015 * a["yaw"] * self.e + 0.012 * a["pitch"] * self.n)).float()
        # Backward map: an output pixel x shows the input at x - w(x) * ((R - I)(x - pivot) + shift).
        rx, ry = self.rel[..., 0], self.rel[..., 1]
        move = torch.stack([(c - 1) * rx - s_ * ry, s_ * rx + (c - 1) * ry], -1) + shift
        turn = torch.from_numpy(self.iod * self.PARALLAX * (a["yaw"] * self.e + a["pitch"] * self.n)).float()
        wdt, hgt = self.size
        disp = self.weight * move + self.bump * turn
        disp = F.interpolate(disp.permute(2, 0, 1)[None], size=(hgt, wdt), mode="bilinear", align_corners=True)
        y0, y1, x0, x1 = self.box
        region = torch.from_numpy(np.ascontiguousarray(out[y0:y1, x0:x1])).permute(2, 0, 1)[None].float()
        res = F.grid_sample(region, self.grid - disp.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                            align_corners=False)
        out[y0:y1, x0:x1] = res[0].add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
