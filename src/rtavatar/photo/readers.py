"""How far a generated mouth is open (inner-lip gap, IOD): what paste mode `warp` moves the
photo's lips to. Each reading is the change from the model's own portrait at rest, times a
gain calibrated per model (`rtavatar calibrate-warp`), so a constant bias on one face cancels
and the photo's own parted lips are not an opening.

`LatentMouthReader` (a model that ships an aperture head) reads from the frame's latents,
decoding only the mouth box: the renderer then never decodes a whole face it does not show.
`ExpertMouthReader` runs the same head on decoded faces, `MouthReader` reads darkening off
decoded pixels (a model without a head).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from rtavatar.models.syncnet import decode_mouth
from rtavatar.models.vae import LatentCodec
from rtavatar.photo.landmarks import INNER_BOTTOM, INNER_TOP, LUMA, MOUTH_LEFT, MOUTH_RIGHT, face_axes
from rtavatar.photo.mouth import CAVITY, face_light


class MouthReader:
    """The opening read off a decoded face's pixels (`needs_face`).

    The photo training clips draw an open mouth as a dark cavity inside the lips; the model
    learned to draw it so. In a box between the photo's mouth corners, `inset` IOD in from each
    (landmarks in the R px crop), each pixel's darkening against the portrait's reconstruction
    is taken as a share of the way to the cavity's colour; shares below `floor` count as none
    (the lips of a closed generated mouth are a little darker than the photo's), and the rest
    sums per column to the cavity's height. The columns' mean, in IOD and times `gain`, is the
    opening. The median change of the box's top and bottom rows is taken off first: a one-step
    model also shifts the shading of the whole lower face, and that is not an opening.
    Brightening (teeth) is not counted: on photos the model brightens lips and skin as often as
    it draws teeth. These choices were made on training-set photos and the "dev" held-out
    photos of docs/RESULTS.md, not on the ones it reports as fresh.
    """

    needs_face = True

    def __init__(self, recon: np.ndarray, pts: np.ndarray, gain: float = 1.0, floor: float = 0.15,
                 inset: float = 0.1) -> None:
        r = recon.shape[0]
        _, _, _, self.iod = face_axes(pts)
        cy = float(pts[[INNER_TOP, INNER_BOTTOM], 1].mean())
        self.box = (int(max(cy - 0.4 * self.iod, 0)), int(min(cy + 0.5 * self.iod, r - 1)) + 1,
                    int(max(pts[MOUTH_LEFT, 0] + inset * self.iod, 0)), int(min(pts[MOUTH_RIGHT, 0] - inset * self.iod, r - 1)) + 1)
        self.lum_r = self._lum(recon)
        self.cavity = float(np.dot(CAVITY, LUMA)) * face_light(recon, pts) * 255.0
        self.gain, self.floor = gain, floor

    def _lum(self, img: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = self.box
        return img[y0:y1, x0:x1].astype(np.float32) @ LUMA

    def __call__(self, face: np.ndarray) -> float:
        diff = self._lum(face) - self.lum_r
        rim = np.concatenate([diff[0], diff[-1]])  # rows above and below the lips (a wide cavity reaches the sides)
        dark = np.clip((float(np.median(rim)) - diff) / np.maximum(self.lum_r - self.cavity, 15.0), 0, 1)
        dark = np.clip((dark - self.floor) / (1 - self.floor), 0, 1)
        return self.gain * float(dark.sum(0).mean()) / self.iod

    def read(self, faces: Sequence[np.ndarray | None], latents: Sequence[torch.Tensor | None]) -> np.ndarray:
        return np.array([self(f) for f in faces])  # type: ignore[arg-type]


class ExpertMouthReader:
    """The opening read by a sync expert's aperture head (models/syncnet.ApertureHead) that ships
    with the model, on decoded faces (`needs_face`).

    The head was trained on the ground truth of the training clips, the photo clips' drawn
    cavities among them, and it is the reader the model's aperture loss was trained against; so
    it reads the openings the model draws as the training taught it to draw them, rather than
    by one hand-set rule on darkness. (Read as absolute, the head puts a smile over teeth at 0,
    and the warp then shuts such a photo's lips whenever the model's mouth is shut; but the
    teeth are squeezed into a white seam between the lips: docs/RESULTS.md.)
    """

    needs_face = True

    def __init__(self, recon: np.ndarray, head: Any, gain: float = 1.0) -> None:
        self.head, self.gain = head, gain
        self.rest = self._read(recon)

    def _read(self, face: np.ndarray) -> float:
        with torch.no_grad():  # the same scaling as the expert's training crops
            return float(self.head(LatentCodec.to_tensor(face[None]))[0])

    def __call__(self, face: np.ndarray) -> float:
        return self.gain * (self._read(face) - self.rest)

    def read(self, faces: Sequence[np.ndarray | None], latents: Sequence[torch.Tensor | None]) -> np.ndarray:
        return np.array([self(f) for f in faces])  # type: ignore[arg-type]


class LatentMouthReader:
    """The aperture head's reading from VAE latents, decoding only the mouth box
    (models/syncnet.decode_mouth: within ~0.02 IOD of reading a full decode, at about half its
    cost): the renderer needs no decoded face (`needs_face` False).

    `decoder` is the VAE decode the engine runs (its device and autocast); `rest` the portrait's
    own latents (1, C, h, w), read once as the zero of every reading. `margin` latents of context
    around the box: 1 reads within 0.006 of a full decode with the shipped model (3: 0.001) at
    half the cost of 3 (docs/BENCHMARKS.md).
    """

    needs_face = False

    def __init__(self, decoder: Callable[[torch.Tensor], torch.Tensor], head: Any, rest: torch.Tensor,
                 gain: float = 1.0, margin: int = 1) -> None:
        self.decoder, self.head, self.gain, self.margin = decoder, head, gain, margin
        self.rest = float(self._read(rest)[0])

    @torch.no_grad()
    def _read(self, z: torch.Tensor) -> np.ndarray:
        z = z.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for the convs
        crops = decode_mouth(_Decode(self.decoder), z, self.head.cfg, margin=self.margin)
        param = next(self.head.parameters())
        return self.head.tower(crops.to(param.device, param.dtype))[:, 0].float().cpu().numpy()

    def read(self, faces: Sequence[np.ndarray | None], latents: Sequence[torch.Tensor | None]) -> np.ndarray:
        """Openings of a batch of frames (one mouth-box decode for all of them)."""
        z = torch.stack(list(latents))  # type: ignore[arg-type]
        return self.gain * (self._read(z) - self.rest)


class _Decode(torch.nn.Module):
    """A decode callable in the shape decode_mouth expects (`codec.decode`)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.decode = fn  # type: ignore[method-assign]
