"""`Avatar`: a loaded model shared by many sessions (DESIGN.md §8).

    from rtavatar import Avatar
    avatar = Avatar.load("runs/student-eft")           # any teacher / distill / EFT run
    frames = avatar.generate("me.jpg", audio)          # offline: (N, H, W, 3) uint8
    session = avatar.session("me.jpg", paste_back=True)  # live: push_audio / frames()

`paste_back=True` composites into the original picture: `paste_mode="warp"` (default) moves the
photo's own lips to the opening the model drew, `"photo"` keeps the photo's own pixels wherever
the face did not move, `"face"` pastes the whole generated face (engine/portrait.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from rtavatar.checkpoints import Bundle, load_bundle, random_bundle
from rtavatar.engine.core import ChunkSampler, sampling_for
from rtavatar.engine.offline import generate_latents
from rtavatar.engine.portrait import DEFAULT_PASTE_MODE, Portrait, make_paste, register
from rtavatar.engine.schedule import ChunkSchedule
from rtavatar.engine.session import Session, as_pcm
from rtavatar.errors import RTAvatarError
from rtavatar.models.conditioning import check_expression, control_vector
from rtavatar.media import read_image, validate_image

log = logging.getLogger(__name__)
# Live sessions move a photo's head by default only up to this size (engine/portrait.HeadMotion's cost).
LIVE_MOTION_PIXELS = 640 * 480


class Avatar:
    """A Bundle ready for inference, optionally quantized (`precision`)."""

    def __init__(self, bundle: Bundle, precision: str = "fp32", device: str | torch.device = "cpu") -> None:
        from rtavatar.engine.quantize import apply_precision

        self.bundle, self.precision = bundle, precision
        bundle.net.to(device)
        bundle.codec.to(device, memory_format=torch.channels_last)
        try:
            self.precision = apply_precision(bundle, precision, device)
        except ValueError as e:
            raise RTAvatarError(str(e)) from e

    @classmethod
    def load(cls, checkpoint: str | Path, *, precision: str = "fp32", device: str | torch.device = "cpu",
             ema: bool = True) -> "Avatar":
        return cls(load_bundle(checkpoint, ema=ema), precision, device)

    @classmethod
    def from_pretrained(cls, name: str | None = None, *, precision: str = "fp32",
                        device: str | torch.device = "cpu") -> "Avatar":
        """The model shipped inside the package (docs/TRAINING.md says how it was trained)."""
        from rtavatar.checkpoints import DEFAULT_MODEL, pretrained_path

        return cls.load(pretrained_path(name or DEFAULT_MODEL), precision=precision, device=device)

    @classmethod
    def random(cls, preset: str = "tiny", *, precision: str = "fp32", device: str | torch.device = "cpu",
               seed: int = 0) -> "Avatar":
        """Random weights of a size preset: for speed work only (the frames are noise)."""
        return cls(random_bundle(preset, seed=seed), precision, device)

    @property
    def resolution(self) -> int:
        return self.bundle.resolution

    def portrait(self, image: str | Path | np.ndarray, align: str = "face") -> Portrait:
        """Read (a path) or check (an array) a picture and align its face."""
        if isinstance(image, (str, Path)):
            name, img = str(image), read_image(image)
        else:
            name, img = "portrait", validate_image(image, name="portrait")
        return register(img, self.resolution, align, name)

    def sampler(self, steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                mute_listen: bool = True) -> ChunkSampler:
        """A ChunkSampler; `mute_listen=False` lets listening frames hear the audio (the model's learned state only)."""
        return ChunkSampler(self.bundle, sampling_for(self.bundle, steps, guidance, sampler), mute_listen)

    def session(self, portrait: str | Path | np.ndarray | Portrait, *, align: str = "face", paste_back: bool = False,
                paste_mode: str = DEFAULT_PASTE_MODE, steps: int | None = None, guidance: float | None = None, state: str = "auto",
                expression: dict[str, float] | None = None, seed: int = 0, schedule: ChunkSchedule | None = None,
                pipeline: bool = True, live: bool = False, buffer: int = 32, voice: str = "energy",
                head_motion: float | None = None, close_lips: bool = True) -> Session:
        """A streaming Session for one portrait (registered once: encoded, reference K/V cached).
        `voice` is what the `auto` state listens with: "energy" (a level rule) or "silero" (silero-vad);
        `head_motion` scales the photo's head motion when pasting back (0: a still head; None: 1 for
        pictures of at most LIVE_MOTION_PIXELS, else 0, since it costs 10-25 ms a frame on a 1,024 px photo);
        `close_lips=False` keeps a photo's parted lips (a smile over teeth) while the mouth is closed."""
        p = portrait if isinstance(portrait, Portrait) else self.portrait(portrait, align)
        cs = self.sampler(steps, guidance)
        ref = cs.reference(p.face)
        if head_motion is None:
            head_motion = 1.0 if p.image.shape[0] * p.image.shape[1] <= LIVE_MOTION_PIXELS else 0.0
            if paste_back and not head_motion:
                log.info("live session on a %dx%d picture: head motion off (pass head_motion=1 to force it)",
                         p.image.shape[1], p.image.shape[0])
        post = self._paste(cs, ref, p, paste_mode, head_motion, close_lips) if paste_back else None
        try:
            return Session(cs, ref, state=state, expression=expression, seed=seed, schedule=schedule,
                           pipeline=pipeline, live=live, buffer=buffer, post=post, voice=voice)
        except ValueError as e:
            raise RTAvatarError(str(e)) from e

    @staticmethod
    def _paste(cs: ChunkSampler, ref: Any, p: Portrait, mode: str, head_motion: float = 1.0,  # noqa: ANN205 - frame -> picture
               close_lips: bool = True):
        return make_paste(p, mode, cs.reconstruction(ref) if mode != "face" else None, cs.bundle.cfg.warp_gain,
                          cs.bundle.reader, head_motion, close_lips)

    @torch.no_grad()
    def iter_frames(self, portrait: str | Path | np.ndarray | Portrait, audio: np.ndarray, *, align: str = "face",
                    paste_back: bool = False, paste_mode: str = DEFAULT_PASTE_MODE, steps: int | None = None, guidance: float | None = None, sampler: str | None = None,
                    state: str = "auto", expression: dict[str, float] | None = None, seed: int = 0, progress: bool = False,
                    decode_batch: int = 16, head_motion: float = 1.0, close_lips: bool = True,
                    **chunking: Any) -> Iterator[np.ndarray]:
        """Offline: the frames for `audio` (16 kHz mono), ceil(len / 640) of them, decoded
        `decode_batch` at a time (latents for the whole file are small; frames are not)."""
        p = portrait if isinstance(portrait, Portrait) else self.portrait(portrait, align)
        cs = self.sampler(steps, guidance, sampler)
        ref = cs.reference(p.face)
        expression = check_expression(expression or {})
        lat = generate_latents(cs, ref, as_pcm(audio), state=state, expression=expression, seed=seed,
                               progress=progress, **chunking)
        paste = self._paste(cs, ref, p, paste_mode, head_motion, close_lips) if paste_back else None
        controls = control_vector(expression)
        for i in range(0, lat.shape[1], decode_batch):
            for f in cs.decode(ref, lat[:, i : i + decode_batch], batch=decode_batch):
                yield paste(f, controls) if paste is not None else f

    def generate(self, portrait: str | Path | np.ndarray | Portrait, audio: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Offline: frames (N, H, W, 3) uint8 for `audio` (see iter_frames)."""
        return np.stack(list(self.iter_frames(portrait, audio, **kwargs)))
