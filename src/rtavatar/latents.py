"""VAE latents of dataset frames, as `rtavatar prepare --vae` caches them beside each clip and
training reads them back (bottom layer: the data package and training both use it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rtavatar.models.vae import LatentCodec

PREPARED_LATENTS = "latents.safetensors"  # clips/<id>/latents.safetensors, tagged with the VAE's fingerprint


def latents_fingerprint(path: Path) -> str | None:
    """The VAE fingerprint a latents file was written with (None if it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("vae")


@torch.no_grad()
def encode_frames(codec: LatentCodec, frames: np.ndarray, batch: int = 32) -> Tensor:
    """(N, H, W, 3) uint8 frames -> (N, C, h, w) latents, in batches."""
    x = LatentCodec.to_tensor(frames)
    return torch.cat([codec.encode(x[k : k + batch]) for k in range(0, len(x), batch)])
