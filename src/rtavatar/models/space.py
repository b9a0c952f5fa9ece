"""The space the diffusion runs in, relative to the VAE's latents (EDM-style preconditioning,
kept with the model rather than with any one training stage).

Residual (the default): each frame's difference from the reference portrait's latent,
scaled to unit std, so the zero-initialised output layer starts as "copy the reference" and
training spends its steps on motion. Absolute: latents scaled to unit std. The reference
itself enters the network as `latent_scale` x its raw latent in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LatentSpace:
    residual: bool = True
    latent_scale: float = 1.0  # 1 / std of the training latents
    residual_scale: float = 1.0  # 1 / std of (latent - reference latent)

    def to_model(self, z: Tensor, ref: Tensor) -> Tensor:
        """VAE latents (B, F, C, h, w) -> model space, given the reference's raw latent (B, C, h, w)."""
        if self.residual:
            return (z - ref[:, None]) * self.residual_scale
        return z * self.latent_scale

    def from_model(self, y: Tensor, ref: Tensor) -> Tensor:
        """Inverse of to_model."""
        if self.residual:
            return y / self.residual_scale + ref[:, None]
        return y / self.latent_scale

    def reference_input(self, ref: Tensor) -> Tensor:
        """The raw reference latent (B, C, h, w) as the network takes it."""
        return ref * self.latent_scale

    def reference_in_model_space(self, ref: Tensor) -> Tensor:
        """The reference frame itself in model space (B, C, h, w): EFT's prior on a first chunk."""
        return self.to_model(ref[:, None], ref)[:, 0]
