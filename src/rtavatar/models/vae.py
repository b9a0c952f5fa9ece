"""The VAE: 8x spatial downsampling, 4 latent channels, a fast decoder.

Built on diffusers' `AutoencoderTiny` (the TAESD shape) with configurable widths: on the
2-core CPU machine a 32-channel decoder takes ~29 ms per 128x128 frame, a 64-channel one
~73 ms (docs/BENCHMARKS.md). Real pretrained `AutoencoderTiny` / `AutoencoderKL` weights
load from a local directory; nothing is fetched from a hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rtavatar.errors import RTAvatarError


@dataclass
class VAEConfig:
    kind: str = "tiny"  # "tiny" (AutoencoderTiny) or "kl" (AutoencoderKL, e.g. SD's VAE from a local path)
    channels: int = 32
    latent_channels: int = 4
    scaling_factor: float = 1.0  # latents are multiplied by this so they have ~unit std (set after training)
    pretrained: str = ""  # local directory with a diffusers config.json + weights


def build_vae(cfg: VAEConfig) -> nn.Module:
    from diffusers import AutoencoderTiny

    if cfg.pretrained:
        return load_pretrained_vae(cfg.pretrained, cfg.kind)
    if cfg.kind != "tiny":
        raise ValueError(f"untrained VAE kind {cfg.kind!r} not supported; use 'tiny' or give --pretrained")
    ch = (cfg.channels,) * 4
    return AutoencoderTiny(encoder_block_out_channels=ch, decoder_block_out_channels=ch, latent_channels=cfg.latent_channels)


def load_pretrained_vae(path: str | Path, kind: str = "tiny") -> nn.Module:
    """Load diffusers VAE weights from a local directory (never from a hub)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    p = Path(path)
    if not (p / "config.json").is_file():
        raise RTAvatarError(
            f"VAE weights {p}: no config.json there. rtavatar loads pretrained VAEs only from a local "
            "directory in diffusers format (config.json + diffusion_pytorch_model.safetensors); "
            "download it yourself where you have network access."
        )
    cls = AutoencoderKL if kind == "kl" else AutoencoderTiny
    return cls.from_pretrained(str(p), local_files_only=True)


class LatentCodec(nn.Module):
    """frames (N, H, W, 3) uint8 <-> scaled latents (N, C, H/8, W/8)."""

    def __init__(self, cfg: VAEConfig, vae: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.vae = vae if vae is not None else build_vae(cfg)

    @staticmethod
    def to_tensor(frames: np.ndarray | Tensor) -> Tensor:
        x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, Tensor) else frames
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @staticmethod
    def to_uint8(x: Tensor) -> np.ndarray:
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def encode(self, x: Tensor) -> Tensor:
        """x in [-1, 1], (N, 3, H, W) -> scaled latents."""
        out = self.vae.encode(x)
        z = out.latents if hasattr(out, "latents") else out.latent_dist.mode()
        return z * self.cfg.scaling_factor

    def decode(self, z: Tensor) -> Tensor:
        """scaled latents -> images in [-1, 1]."""
        return self.vae.decode(z / self.cfg.scaling_factor).sample
