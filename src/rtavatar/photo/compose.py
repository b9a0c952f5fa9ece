"""The photo renderer: generated frames -> the photo's own frames (paste-back).

The render contract. The engine hands the renderer a `RenderFrame` per generated frame: its
index on the session's clock, its state, its named controls in user units, its VAE latents,
and the decoded face only when the renderer declared it needs one (`needs_face`). The renderer
returns the picture. Everything that moves with time (blinks, head sway) is keyed by the
frame's index, so a frame the engine drops before it is shown moves nothing, and a rewound
stream (an interrupt) renders its frames again from where it was cut.

Three compositors (`PasteOptions.mode`):
- `face` (`FacePaste`): the whole generated face, resized to its box and blended in through a
  feathered mask (pictures of the model's own kind: synthetic or prepared crops).
- `photo`: a `PhotoCompositor` with a `GeneratedMouth`: the photo's own pixels wherever the
  face did not move, the model's mouth where it did.
- `warp` (the default): a `PhotoCompositor` with a `WarpedMouth`: even the mouth is the photo's
  own, its lips moved (photo/animator.py) to the opening a reader takes from the model's frame
  (photo/readers.py); with a model's aperture head the reading comes from the latents alone,
  and no face is decoded at all.
A PhotoCompositor is composition: the photo's effects (lids: blinks and eye openness; the
expression warp; head motion) around one mouth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from rtavatar.errors import RTAvatarError
from rtavatar.photo.align import EYE_MOUTH_FRAC, EYE_Y, IOD_FRAC, Portrait
from rtavatar.photo.animator import Pose, PhotoAnimator
from rtavatar.photo.geometry import (Clip, blur, box_pixels, feather_mask, sample_grid, to_uint8, tps_backward_map,
                                     warp_image)
from rtavatar.photo.landmarks import (BROWS, CHIN, EYE_LEFT_START, EYE_RIGHT_START, EYES, MOUTH_LEFT, MOUTH_RIGHT,
                                     NOSE_TIP, UPPER_LIP_TOP, LOWER_LIP_BOTTOM, face_axes, inner_gap)
from rtavatar.models.motion import shape_gap
from rtavatar.photo.lids import Blinks, paint_blink
from rtavatar.photo.motion import ExpressionWarp, HeadMotion
from rtavatar.photo.mouth import PHOTO_INTERIOR, TEETH_OF_WHITE, PartedLips, photo_white
from rtavatar.photo.options import DEFAULT_BLINKS, PasteOptions
from rtavatar.photo.readers import MouthReader

log = logging.getLogger(__name__)
# A photo whose own lips are parted at least this much (inner-lip gap, IOD) closes them in silence.
PARTED_REST = 0.04


@dataclass
class RenderFrame:
    """One generated frame as the engine hands it to the renderer."""

    index: int  # on the session's clock (frame i shows audio [i x 640, (i + 1) x 640))
    state: str  # "speak" | "listen" | "idle"
    controls: dict[str, float]  # named controls in user units (docs/DATA.md)
    latents: torch.Tensor | None = None  # (C, h, w) the frame's VAE latents
    face: np.ndarray | None = None  # (R, R, 3) uint8 decoded face: only for a renderer that `needs_face`
    motion: np.ndarray | None = None  # (P, 2) MotionNet offsets of the mouth and jaw: only for a renderer that `uses_motion`

    @property
    def speaking(self) -> bool:
        return self.state == "speak"


class Renderer(Protocol):
    needs_face: bool
    uses_motion: bool
    needs_latents: bool  # False: the model's frames are not read at all (the engine may skip its denoiser)

    def render(self, frames: Sequence[RenderFrame]) -> list[np.ndarray]: ...


class FacePaste:
    """Paste mode `face`: each generated face resized to its box in the original picture and
    blended in through a feathered mask."""

    needs_face, uses_motion, needs_latents = True, False, True

    def __init__(self, portrait: Portrait) -> None:
        self.base = portrait.image
        x0, y0, self.side = portrait.box
        self.clip = Clip.of(x0, y0, self.side, self.base.shape)
        sy0, sy1, sx0, sx1 = self.clip.src
        self.mask = feather_mask(self.side)[sy0:sy1, sx0:sx1]
        dy0, dy1, dx0, dx1 = self.clip.dst
        self.under = self.base[dy0:dy1, dx0:dx1].astype(np.float32)

    def __call__(self, face: np.ndarray) -> np.ndarray:
        """(R, R, 3) generated face -> (H, W, 3) picture."""
        big = np.asarray(Image.fromarray(face).resize((self.side, self.side), Image.BICUBIC), np.float32)
        sy0, sy1, sx0, sx1 = self.clip.src
        dy0, dy1, dx0, dx1 = self.clip.dst
        out = self.base.copy()
        out[dy0:dy1, dx0:dx1] = to_uint8(self.under + self.mask * (big[sy0:sy1, sx0:sx1] - self.under))
        return out

    def render(self, frames: Sequence[RenderFrame]) -> list[np.ndarray]:
        return [self(f.face) for f in frames]  # type: ignore[arg-type]


def lower_face_mask(side: int, pts: np.ndarray | None, drop: float = 0.45, feather: float = 0.12) -> np.ndarray:
    """(side, side) weight of the region a talking face moves: nose tip to below the chin.

    `pts` are the 68 landmarks in box pixels (None: the training framing's mouth position).
    The chin is extended by `drop` inter-ocular distances (an open jaw), and the edge is
    feathered over `feather` IOD.
    """
    if pts is None:  # a face crop in the training framing: a box around the mouth
        iod = IOD_FRAC * side
        cy = (EYE_Y + EYE_MOUTH_FRAC) * side
        poly = [(side / 2 - 1.3 * iod, cy - 0.55 * iod), (side / 2 + 1.3 * iod, cy - 0.55 * iod),
                (side / 2 + 1.1 * iod, cy + 1.2 * iod), (side / 2 - 1.1 * iod, cy + 1.2 * iod)]
    else:
        _, _, down, iod = face_axes(pts)
        top = pts[NOSE_TIP] - 0.05 * iod * down
        jaw = [pts[i] + drop * iod * down * (1 - abs(i - CHIN) / 9) for i in range(2, 15)]
        poly = [tuple(p) for p in [np.array([pts[2][0], top[1]])] + jaw + [np.array([pts[14][0], top[1]])]]
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).polygon(poly, fill=255)
    m = torch.from_numpy(np.asarray(img, np.float32) / 255.0)[None]
    return blur(m, feather * iod / 2)[0].clamp(0, 1).numpy()


class Lids:
    """Blinks (`Blinks`, by frame index) and the eye-openness controls, painted on the photo's
    own eyelids (photo/lids.paint_blink) in a band around both eyes."""

    def __init__(self, image: np.ndarray, pts: np.ndarray, per_minute: float = DEFAULT_BLINKS, seed: int = 0) -> None:
        self.image = image
        h, w = image.shape[:2]
        _, _, _, iod = face_axes(pts)
        x0 = int(max(pts[EYE_LEFT_START, 0] - 0.5 * iod, 0))
        x1 = int(min(pts[EYE_RIGHT_START + 3, 0] + 0.5 * iod, w))
        y0, y1 = int(max(pts[BROWS, 1].min() - 0.2 * iod, 0)), int(min(pts[EYES, 1].max() + 0.5 * iod, h))
        self.band, self.pts = (y0, y1, x0, x1), pts - np.array([x0, y0], np.float64)
        self.blinks = Blinks(per_minute, seed)

    def __call__(self, out: np.ndarray, frame: RenderFrame) -> None:
        c = self.blinks(frame.index)
        held = ExpressionWarp.closure(frame.controls)
        lids = (max(c, held[0]), max(c, held[1]))
        if max(lids) > 0:
            y0, y1, x0, x1 = self.band
            out[y0:y1, x0:x1] = to_uint8(paint_blink(self.image[y0:y1, x0:x1], self.pts, lids))


class GeneratedMouth:
    """Paste mode `photo`'s mouth: the generated lower face, keeping the photo's own pixels
    wherever it did not move.

    With the photo P (the crop box at its own resolution), the model's reconstruction of its
    portrait R and a generated frame G (both upsampled), inside the lower-face mask M:

        out = P + M * (G - R - (1 - w) * D),   D = P - R - lowpass(P - R)

    where w -> 1 where G equals R (nothing moved: out is the photo itself, sharp) and w -> 0
    where the face changed shape (an open mouth: out is G plus the photo's low-frequency
    colour, so the generated mouth matches the photo's lighting). w reads only the change's
    fine part, G - R minus its blur over `shade_sigma` face pixels: a one-step model also
    shifts the shading of the whole lower face a little, and judged by the full change that
    shift traded the photo's skin texture for the model's soft 128 px skin.
    """

    needs_face, uses_motion, needs_latents = True, False, True

    def __init__(self, portrait: Portrait, recon: np.ndarray, tau: float = 18.0, shade_sigma: float = 3.0) -> None:
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
        self.dst = (y0 + by0, y0 + by1, x0 + bx0, x0 + bx1)
        self.mask = mask[by0:by1, bx0:bx1, None]
        P = torch.from_numpy(box_pixels(self.base, portrait.box).astype(np.float32)).permute(2, 0, 1)
        self.recon = recon.astype(np.float32)
        # Where each box pixel samples the (R, R) face: the whole box once, the mask's box per frame.
        self.grid = sample_grid(0, side, 0, side, side, side)
        Rb = self._up(recon)
        detail = (P - Rb) - blur(P - Rb, side / 48)
        self.grid = sample_grid(by0, by1, bx0, bx1, side, side)
        self.Rb = Rb[:, by0:by1, bx0:bx1]
        self.detail = detail[:, by0:by1, bx0:bx1]
        self.under = self.base[self.dst[0] : self.dst[1], self.dst[2] : self.dst[3]].astype(np.float32)

    def _up(self, face: np.ndarray | torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(face) if isinstance(face, np.ndarray) else face, dtype=torch.float32)
        x = x.permute(2, 0, 1)[None] if x.shape[-1] == 3 else x[None]
        return torch.nn.functional.grid_sample(x, self.grid, mode=mode, padding_mode="border", align_corners=False)[0]

    def read(self, frames: Sequence[RenderFrame]) -> list[None]:
        return [None] * len(frames)

    def __call__(self, out: np.ndarray, frame: RenderFrame, reading: Any = None) -> None:
        """The generated lower face, composited into `out` (in place)."""
        face = frame.face
        d = torch.from_numpy(face.astype(np.float32) - self.recon).permute(2, 0, 1)  # type: ignore[union-attr]
        change = (d - blur(d, self.shade_sigma)).abs().mean(0, keepdim=True)
        w = (1 - blur(change, 1.0) / self.tau).clamp(0, 1)
        w = self._up(w, "bilinear")
        delta = (self._up(face) - self.Rb - (1 - w) * self.detail).permute(1, 2, 0).numpy()  # type: ignore[arg-type]
        dy0, dy1, dx0, dx1 = self.dst
        out[dy0:dy1, dx0:dx1] = to_uint8(self.under + self.mask * delta)


class WarpedMouth:
    """Paste mode `warp`'s mouth: the photo's own lips move the way the model says.

    With a model that ships a MotionNet, every frame carries its offsets (`RenderFrame.motion`):
    the photo's lip and jaw landmarks move by them (opening, width, rounding, the jaw), and no
    reader runs (`reader=None`). Otherwise a reader (photo/readers.py) takes each frame's
    opening, a change from the portrait at rest, and the photo's mouth is re-rendered at the photo's resolution by the landmark warp
    the photo training clips were made with (`PhotoAnimator`: lips and jaw move, the cavity,
    teeth and tongue are drawn inside). The model decides when and how far the mouth opens; the
    pixels are the photo's. A photo whose own lips are parted by at least PARTED_REST (a smile
    over teeth) is moved by `PartedLips` instead: its lips close when the model's mouth is
    closed, and in speech its jaw drops under its own upper teeth (`close_lips=False`: the
    photo's parted lips stay its rest, e.g. a smile kept while listening). With a MotionNet the
    parted lips open and close by the offsets' opening, and then the offsets' sideways part
    (width, rounding, the jaw's sideways motion) moves them by a spline (`_sideways`), so a
    smiling photo rounds and spreads as others do.
    """

    def __init__(self, portrait: Portrait, reader: Any, close_lips: bool = True, close_ramp: float = 0.1,
                 step: float = 0.005, cache: int = 128) -> None:
        if portrait.landmarks is None:
            raise RTAvatarError("paste mode 'warp' needs a face-aligned portrait (align='face')")
        self.reader = reader
        self.needs_face = bool(reader is not None and reader.needs_face)
        self.uses_motion = reader is None
        self.needs_latents = reader is not None  # with the MotionNet's offsets the model's frames go unread
        pts = portrait.landmarks
        self.rest = inner_gap(pts)  # the photo's own lip gap: the reader's change is added to it
        _, _, _, iod = face_axes(pts)
        c = pts[[MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_TOP, LOWER_LIP_BOTTOM]].mean(0)
        sq = max(int(round(2.4 * iod)), 16)
        sx, sy = int(round(c[0] - sq / 2)), int(round(c[1] - sq / 2 + 0.2 * iod))
        self.clip = Clip.of(sx, sy, sq, portrait.image.shape)
        square = box_pixels(portrait.image, (sx, sy, sq))
        local = pts - np.array([sx, sy], np.float64)
        white = photo_white(portrait.image, pts)  # the drawn teeth are as white as the photo's whites
        teeth = None if white is None else white * np.array(TEETH_OF_WHITE, np.float32)
        self.animator = PhotoAnimator(square, local, interior=PHOTO_INTERIOR, teeth_rgb=teeth)
        self.parted = PartedLips(square, local) if self.rest >= PARTED_REST else None
        self.close_lips, self.ramp = close_lips, close_ramp
        self.opening = 0.0  # the last frame's reading (IOD, a change from the photo's own gap)
        # Renders depend only on the opening: cached per `step` IOD (a pixel or less at 1,024 px).
        self.step, self.cache, self._renders = step, cache, {}  # type: ignore[var-annotated]

    def _render(self, gap: float) -> np.ndarray:
        """The mouth square with the photo's lips at inner-lip gap `gap` (IOD)."""
        key = int(round((gap - self.rest) / self.step))  # steps from the photo's own gap
        if key not in self._renders:
            if len(self._renders) >= self.cache:
                self._renders.pop(next(iter(self._renders)))
            if self.parted is not None:
                moved = (self.parted.close(min(-key * self.step / self.rest, 1.0)) if key < 0 else
                         self.parted.open(key * self.step))
                self._renders[key] = to_uint8(moved)
            else:
                self._renders[key] = self.animator.render(Pose(mouth_open=self.rest + key * self.step))
        return self._renders[key]

    def _sideways(self, square: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """`square` with the photo's lip and jaw points moved by the x (face-frame) part of the
        MotionNet's `offsets`: a thin-plate spline, the other landmarks and the border fixed."""
        x_only = np.zeros_like(offsets)
        x_only[:, 0] = offsets[:, 0]
        if np.abs(x_only).max() < self.step:
            return square
        a = self.animator  # its landmarks and border are the square's
        grid = tps_backward_map(np.concatenate([a.landmarks(Pose(mouth_shape=x_only)), a.border]),
                                np.concatenate([a.pts, a.border]), square.shape[0])
        return to_uint8(warp_image(square, grid))

    def gap(self, opening: float) -> float | None:
        """The inner-lip gap (IOD) shown for a reading `opening` (None: the photo as it is).

        The reading is a change from the portrait, so it adds to the photo's own gap; but lips
        the photo shows parted (`parted`) close as the reading falls to 0, over `ramp` IOD
        (unless `close_lips` is off).
        """
        if self.parted is None or not self.close_lips:
            return None if opening < 0.01 else self.rest + opening
        return opening + self.rest * min(opening / self.ramp, 1.0)

    def read(self, frames: Sequence[RenderFrame]) -> list[float] | list[np.ndarray]:
        """The frames' MotionNet offsets, or their openings (IOD, >= 0) read in one batch."""
        if self.reader is None:
            if any(f.motion is None for f in frames):
                raise RTAvatarError("paste mode warp without a reader needs each frame's MotionNet offsets (RenderFrame.motion)")
            return [np.asarray(f.motion, np.float64) for f in frames]
        r = self.reader.read([f.face for f in frames], [f.latents for f in frames])
        return [max(float(v), 0.0) for v in r]

    def __call__(self, out: np.ndarray, frame: RenderFrame, reading: float | np.ndarray) -> None:
        if isinstance(reading, np.ndarray):
            self.opening = max(float(shape_gap(reading)), 0.0)
            if self.parted is None:
                if np.abs(reading).max() >= self.step:  # below a step the photo as it is
                    self.clip.paste(out, self.animator.render(Pose(mouth_shape=reading)))
                return
        else:
            self.opening = reading
        gap = self.gap(self.opening)
        if isinstance(reading, np.ndarray):  # parted lips: their opening, then the offsets' sideways part
            square = self.animator.image if gap is None else self._render(gap)
            moved = self._sideways(square, reading)
            if gap is not None or moved is not square:
                self.clip.paste(out, moved)
        elif gap is not None:
            self.clip.paste(out, self._render(gap))


class PhotoCompositor:
    """Paste modes `photo` and `warp`: the photo's effects around one mouth. Per frame: the
    photo, its lids (blinks, eye openness), the mouth, the expression warp (smile, brows), then
    the head motion (more while the frame's state is `speak`)."""

    def __init__(self, portrait: Portrait, mouth: GeneratedMouth | WarpedMouth, head_motion: float = 1.0,
                 blinks: float = DEFAULT_BLINKS, seed: int = 0) -> None:
        self.base, self.mouth = portrait.image, mouth
        self.needs_face, self.uses_motion, self.needs_latents = mouth.needs_face, mouth.uses_motion, mouth.needs_latents
        pts = portrait.landmarks
        self.lids = None if pts is None else Lids(self.base, pts, blinks, seed)
        self.expression = None if pts is None else ExpressionWarp(self.base.shape, pts)
        self.motion = None if pts is None or head_motion <= 0 else HeadMotion(self.base.shape, pts, seed, head_motion)

    def render(self, frames: Sequence[RenderFrame]) -> list[np.ndarray]:
        readings = self.mouth.read(frames)
        pictures = []
        for frame, reading in zip(frames, readings):
            out = self.base.copy()
            if self.lids is not None:
                self.lids(out, frame)
            self.mouth(out, frame, reading)
            if self.expression is not None:
                self.expression(out, frame.controls)
            if self.motion is not None:
                self.motion(out, frame.index, frame.speaking, frame.controls)
            pictures.append(out)
        return pictures


def make_renderer(portrait: Portrait, options: PasteOptions, recon: np.ndarray | None = None, reader: Any = None,
                  gain: float = 1.0, seed: int = 0, motion: bool = False) -> Renderer:
    """The renderer for `options` (PasteOptions). `photo` and `warp` need the model's
    reconstruction of the portrait (`recon`); `warp` moves the mouth by each frame's MotionNet
    offsets when `motion` (the model ships a MotionNet), else reads openings with `reader` (a
    LatentMouthReader or ExpertMouthReader the engine built from the model's aperture head),
    else with a MouthReader on decoded pixels, times `gain` (the model's InferenceConfig.warp_gain).
    Without landmarks (`align="center"`) `warp` falls back to `photo`."""
    if options.mode == "face" or recon is None:
        return FacePaste(portrait)
    head_motion = 1.0 if options.head_motion is None else options.head_motion
    mouth: GeneratedMouth | WarpedMouth
    if options.mode == "warp" and portrait.landmarks is not None:
        if motion:
            reader = None
        elif reader is None:
            x0, y0, side = portrait.box
            local = (portrait.landmarks - np.array([x0, y0], np.float64)) * (recon.shape[0] / side)
            reader = MouthReader(recon, local, gain)
        mouth = WarpedMouth(portrait, reader, close_lips=options.close_lips)
    else:
        mouth = GeneratedMouth(portrait, recon)
    return PhotoCompositor(portrait, mouth, head_motion, options.blinks, seed)


def render_one(renderer: Renderer, face: np.ndarray | None = None, *, index: int = 0, state: str = "idle",
               controls: dict[str, float] | None = None, latents: torch.Tensor | None = None) -> np.ndarray:
    """One frame through a renderer, outside a session (tests, scripts): the controls default to neutral."""
    from rtavatar.models.conditioning import NEUTRAL

    return renderer.render([RenderFrame(index, state, {**NEUTRAL, **(controls or {})}, latents, face)])[0]
