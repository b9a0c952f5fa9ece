"""One chunk of generation, the piece every caller shares: the offline `generate`, the
streaming Session, training's sample videos and `rtavatar eval`.

A chunk is k clean context (motion) latents followed by `new` frames to generate, with
each frame's audio tokens, state and controls. Sampling follows the bundle's SamplingConfig
(overridable per call): teacher DDIM/Euler with CFG on audio, or the consistency sampler of
a distilled student (its guidance scale an input), from pure noise or from the EFT prior.

Listening frames hear silence (`mute_listen`, on by default). The model's audio input is the
avatar's own voice, and in training a listening face's own track is silent; audio that plays
while the state is forced to `listen` (someone else's voice, or a TTS clip under
`--state listen`) is not the avatar's speech, so its lips must not follow it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import Bundle
from rtavatar.diffusion import SAMPLERS, SamplingConfig, cfg_denoiser, start_latents, v_denoiser
from rtavatar.errors import RTAvatarError
from rtavatar.models.conditioning import STATE_ID, Conditioning
from rtavatar.models.dit import ReferenceCache
from rtavatar.models.vae import LatentCodec


@dataclass
class Reference:
    """A registered portrait: its VAE latent, the same in model space, and the per-layer K/V cache."""

    raw: Tensor  # (1, C, h, w)
    model: Tensor  # (1, C, h, w) in model space
    cache: ReferenceCache


def sampling_for(bundle: Bundle, steps: int | None = None, guidance: float | None = None,
                 sampler: str | None = None) -> SamplingConfig:
    """The bundle's sampling defaults with per-call overrides, validated (clear errors)."""
    s = bundle.cfg.sampling
    out = replace(s, steps=s.steps if steps is None else steps, guidance=s.guidance if guidance is None else guidance,
                  sampler=s.sampler if sampler is None else sampler)
    try:
        return out.validate()
    except ValueError as e:
        raise RTAvatarError(str(e)) from e


class ChunkSampler:
    """Samples chunks for one portrait with one SamplingConfig."""

    def __init__(self, bundle: Bundle, sampling: SamplingConfig, mute_listen: bool = True) -> None:
        self.bundle, self.sampling, self.mute_listen = bundle, sampling, mute_listen
        self.net = bundle.net
        d = bundle.cfg.net.dit
        self.latent_shape = (d.latent_channels, d.latent_size, d.latent_size)
        self._silence: Tensor | None = None

    def _autocast(self, dtype: torch.dtype | None):  # noqa: ANN202
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def reference(self, portrait: np.ndarray) -> Reference:
        """(R, R, 3) uint8 aligned face -> Reference (encoded once per avatar)."""
        r = self.bundle.resolution
        if portrait.shape[:2] != (r, r):
            raise RTAvatarError(f"portrait must be {r}x{r} after alignment, got {portrait.shape[1]}x{portrait.shape[0]}")
        codec = self.bundle.codec
        raw = codec.encode(LatentCodec.to_tensor(portrait[None]).to(next(codec.parameters()).device)).to(self.device)
        space = self.bundle.cfg.space
        return Reference(raw, space.reference_in_model_space(raw), self.net.dit.encode_reference(space.reference_input(raw)))

    @torch.no_grad()
    def sample(self, ref: Reference, context: Tensor, audio: Tensor, state: Tensor, controls: Tensor,
               generator: torch.Generator) -> Tensor:
        """New latents (1, new, C, h, w) in model space.

        context: (1, k, C, h, w) model-space motion latents; audio: (1, k + new, 2W+1, D)
        tokens; state: (1, k + new) long; controls: (1, k + new, n_controls)."""
        s, dev = self.sampling, self.device
        k, f = context.shape[1], audio.shape[1]
        if self.mute_listen:
            audio = torch.where((state == STATE_ID["listen"])[..., None, None], self.silence().to(audio.dtype), audio)
        eps = torch.randn(1, f - k, *self.latent_shape, generator=generator).to(dev)
        x, active, t_start = start_latents(s, context, ref.model, torch.cat([context, eps], 1))
        cond = Conditioning(audio=audio, state=state, controls=controls, ref_cache=ref.cache)
        dit = self.bundle.runtime.dit if self.bundle.runtime is not None else self.net.dit
        denoise = v_denoiser(lambda x_, t, c: dit(x_, t, c))
        if s.guidance_input:
            cond = cond.replace(guidance=torch.tensor([s.guidance], device=dev))
        else:  # CFG on audio: the unconditional pass drops the audio only
            denoise = cfg_denoiser(denoise, cond.replace(audio=None), s.guidance)
        with self._autocast(self.bundle.autocast):
            x = SAMPLERS[s.sampler](denoise, x, active, cond, steps=s.steps, t_start=t_start, generator=generator)
        return x[:, k:].float()

    @torch.no_grad()
    def silence(self) -> Tensor:
        """(2W+1, D) audio tokens of one frame inside a long silence (computed once)."""
        if self._silence is None:
            n, m = 9, self.bundle.cfg.net.audio_margin
            wav = torch.zeros(1, (n + 2 * m) * SAMPLES_PER_FRAME, device=self.device)
            self._silence = self.net.audio_tokens(wav, n)[0, n // 2]
        return self._silence

    @torch.no_grad()
    def reconstruction(self, ref: Reference) -> np.ndarray:
        """The portrait as the VAE gives it back (R, R, 3) uint8: what 'nothing moved' looks like."""
        codec = self.bundle.codec
        with self._autocast(self.bundle.decoder_autocast):
            x = codec.decode(ref.raw.to(next(codec.parameters()).device).contiguous(memory_format=torch.channels_last))
        return LatentCodec.to_uint8(x.float())[0]

    def raw_latents(self, ref: Reference, latents: Tensor) -> Tensor:
        """Model-space latents (1, N, C, h, w) -> the VAE's latents (N, C, h, w)."""
        return self.bundle.cfg.space.from_model(latents, ref.raw)[0]

    @torch.no_grad()
    def decode_raw(self, z: Tensor, batch: int = 16) -> np.ndarray:
        """VAE latents (N, C, h, w) -> frames (N, R, R, 3) uint8."""
        z = z.to(next(self.bundle.codec.parameters()).device).contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout
        decode = self.vae_decode
        x = torch.cat([decode(z[i : i + batch]) for i in range(0, len(z), batch)])
        return LatentCodec.to_uint8(x.float())

    @torch.no_grad()
    def vae_decode(self, z: Tensor, runtime: bool = True) -> Tensor:
        """The VAE decoder as inference runs it (its device and autocast; `runtime`: another
        backend's when the bundle has one): latents (N, C, h, w) -> [-1, 1] images."""
        codec = self.bundle.codec
        decode = self.bundle.runtime.decode if runtime and self.bundle.runtime is not None else codec.decode
        with self._autocast(self.bundle.decoder_autocast):
            return decode(z.to(next(codec.parameters()).device)).float()

    def decode(self, ref: Reference, latents: Tensor, batch: int = 16) -> np.ndarray:
        """Model-space latents (1, N, C, h, w) -> frames (N, R, R, 3) uint8."""
        return self.decode_raw(self.raw_latents(ref, latents), batch)
