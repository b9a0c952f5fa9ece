"""`Avatar`: a loaded model shared by many sessions (DESIGN.md §8).

    from rtavatar import Avatar
    avatar = Avatar.load("runs/student-eft")           # any teacher / distill / EFT run
    frames = avatar.generate("me.jpg", audio)          # offline: (N, H, W, 3) uint8
    session = avatar.session("me.jpg", paste=PasteOptions())  # live: push_audio / frames()

`paste=PasteOptions(...)` (or `paste=True` for the defaults) composites into the original picture
by the photo renderer (rtavatar/photo/): mode `"warp"` (default) moves the photo's own lips to the
opening the model drew, `"photo"` keeps the photo's own pixels wherever the face did not move,
`"face"` pastes the whole generated face. Without it (None, the default here) frames are the
model's aligned R px faces.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import Bundle, load_bundle, random_bundle
from rtavatar.engine.core import ChunkSampler, sampling_for
from rtavatar.engine.offline import frame_count, generate_latents
from rtavatar.engine.schedule import ChunkSchedule
from rtavatar.engine.motion import ArrayTimeline
from rtavatar.engine.session import Session, as_pcm, mouth_track, render_chunk, skips_denoiser
from rtavatar.errors import RTAvatarError
from rtavatar.media import read_image, validate_image
from rtavatar.models.conditioning import check_expression, control_vector, offline_states
from rtavatar.photo.align import Portrait, register
from rtavatar.photo.compose import Renderer, make_renderer
from rtavatar.photo.options import PasteOptions
from rtavatar.photo.readers import LatentMouthReader

log = logging.getLogger(__name__)
# Live sessions move a photo's head by default only up to this size (photo/motion.HeadMotion's cost).
LIVE_MOTION_PIXELS = 640 * 480


def as_options(paste: PasteOptions | bool | None) -> PasteOptions | None:
    """`paste` as PasteOptions: True -> the defaults, False / None -> no paste-back."""
    if paste is True:
        return PasteOptions()
    if paste is None or paste is False:
        return None
    if not isinstance(paste, PasteOptions):
        raise RTAvatarError(f"paste must be PasteOptions, True or None, got {type(paste).__name__}")
    return paste


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

    def session(self, portrait: str | Path | np.ndarray | Portrait, *, align: str = "face",
                paste: PasteOptions | bool | None = None, steps: int | None = None, guidance: float | None = None,
                state: str = "auto", expression: dict[str, float] | None = None, seed: int = 0,
                schedule: ChunkSchedule | None = None, pipeline: bool = True, live: bool = False, buffer: int = 32,
                voice: str = "energy", max_ahead: float | None = None) -> Session:
        """A streaming Session for one portrait (registered once: encoded, reference K/V cached).
        `paste`: the photo renderer's options (True: the defaults; None: the aligned face); a
        live session on a picture over LIVE_MOTION_PIXELS keeps the head still unless
        `head_motion` is given (it costs 10-25 ms a frame on a 1,024 px photo). `voice` is what
        the `auto` state listens with: "energy" (a level rule) or "silero" (silero-vad); `max_ahead`:
        refuse pushes that put the audio more than that many seconds ahead of the frames read."""
        p = portrait if isinstance(portrait, Portrait) else self.portrait(portrait, align)
        cs = self.sampler(steps, guidance)
        ref = cs.reference(p.face)
        options = as_options(paste)
        if options is not None and options.head_motion is None:
            large = p.image.shape[0] * p.image.shape[1] > LIVE_MOTION_PIXELS
            if large:
                log.info("live session on a %dx%d picture: head motion off (pass head_motion=1 to force it)",
                         p.image.shape[1], p.image.shape[0])
            options = replace(options, head_motion=0.0 if large else 1.0)
        renderer = self.renderer(cs, ref, p, options, seed) if options is not None else None
        try:
            return Session(cs, ref, state=state, expression=expression, seed=seed, schedule=schedule,
                           pipeline=pipeline, live=live, buffer=buffer, renderer=renderer, voice=voice, max_ahead=max_ahead)
        except ValueError as e:
            raise RTAvatarError(str(e)) from e

    @staticmethod
    def renderer(cs: ChunkSampler, ref: Any, p: Portrait, options: PasteOptions, seed: int = 0) -> Renderer:
        """The photo renderer for a portrait (photo/compose.make_renderer): paste mode `warp` reads
        the openings from the latents with the model's aperture head when it ships one."""
        if options.mode == "face":
            return make_renderer(p, options, seed=seed)
        bundle = cs.bundle
        reader = None
        if options.mode == "warp" and bundle.reader is not None and p.landmarks is not None and bundle.motion is None:
            reader = LatentMouthReader(lambda z: cs.vae_decode(z, runtime=False), bundle.reader, ref.raw, bundle.cfg.warp_gain)
        return make_renderer(p, options, cs.reconstruction(ref), reader, bundle.cfg.warp_gain, seed, motion=bundle.motion is not None)

    @torch.no_grad()
    def iter_frames(self, portrait: str | Path | np.ndarray | Portrait, audio: np.ndarray, *, align: str = "face",
                    paste: PasteOptions | bool | None = None, steps: int | None = None, guidance: float | None = None,
                    sampler: str | None = None, state: str = "auto", expression: dict[str, float] | None = None,
                    seed: int = 0, progress: bool = False, decode_batch: int = 16, **chunking: Any) -> Iterator[np.ndarray]:
        """Offline: the frames for `audio` (16 kHz mono), ceil(len / 640) of them, decoded
        `decode_batch` at a time (latents for the whole file are small; frames are not)."""
        p = portrait if isinstance(portrait, Portrait) else self.portrait(portrait, align)
        cs = self.sampler(steps, guidance, sampler)
        ref = cs.reference(p.face)
        expression = check_expression(expression or {})
        pcm = as_pcm(audio)
        options = as_options(paste)
        if options is not None and options.head_motion is None:
            options = replace(options, head_motion=1.0)
        renderer = self.renderer(cs, ref, p, options, seed) if options is not None else None
        track = mouth_track(self.bundle.motion, renderer)
        if skips_denoiser(track, renderer):
            lat = torch.zeros(1, frame_count(pcm), *cs.latent_shape)
        else:
            lat = generate_latents(cs, ref, pcm, state=state, expression=expression, seed=seed, progress=progress, **chunking)
        n = lat.shape[1]
        states = offline_states(np.pad(pcm, (0, n * SAMPLES_PER_FRAME - len(pcm))), n, state)
        controls = np.repeat(control_vector(expression)[None], n, 0)
        mouth = None if track is None else track.clip_offsets(ArrayTimeline(pcm), n, self.bundle.cfg.max_new)
        for i in range(0, n, decode_batch):
            chunk = lat[:, i : i + decode_batch]
            if renderer is None:
                yield from cs.decode(ref, chunk, batch=decode_batch)
            else:
                yield from render_chunk(renderer, cs, ref, chunk, i, states[i : i + decode_batch],  # type: ignore[misc]
                                        controls[i : i + decode_batch], mouth=None if mouth is None else mouth[i : i + decode_batch])

    def generate(self, portrait: str | Path | np.ndarray | Portrait, audio: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Offline: frames (N, H, W, 3) uint8 for `audio` (see iter_frames)."""
        return np.stack(list(self.iter_frames(portrait, audio, **kwargs)))
