"""Offline generation over a whole audio file (`rtavatar generate`, `eval`, training samples).

The audio is encoded once for the whole file and the states are read from the whole file
(`offline_states`); the chunks are then sampled in order, each later chunk carrying the last
`motion` generated latents as clean context. A live Session does the same chunk by chunk,
with streaming audio features and causal states.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.engine.core import ChunkSampler, Reference
from rtavatar.errors import RTAvatarError
from rtavatar.models.conditioning import control_vector, offline_states


class Cancelled(RTAvatarError):
    """An offline generation stopped on request (a client that went away)."""


def frame_count(audio: np.ndarray) -> int:
    """Frames a clip of 16 kHz samples makes: ceil(len / 640), at least one."""
    return max(1, int(np.ceil(len(audio) / SAMPLES_PER_FRAME)))


@torch.no_grad()
def generate_latents(sampler: ChunkSampler, ref: Reference, audio: np.ndarray, *, state: str = "auto",
                     expression: dict[str, float] | None = None, first_chunk: int = 4, chunk: int | None = None,
                     motion: int | None = None, seed: int = 0, progress: bool = True,
                     cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
    """Model-space latents (1, N, C, h, w) for `audio` (16 kHz mono), N = ceil(len(audio) / 640).
    `cancelled()` is asked before each chunk; when it says so, Cancelled is raised."""
    icfg, net = sampler.bundle.cfg, sampler.net
    chunk = chunk or icfg.max_new
    motion = icfg.max_motion if motion is None else motion
    n = frame_count(audio)
    audio = np.pad(audio, (0, n * SAMPLES_PER_FRAME - len(audio)))
    m = icfg.net.audio_margin
    dev = sampler.device  # inputs and noise are made on the CPU, then moved
    wav = torch.from_numpy(np.pad(audio, (m * SAMPLES_PER_FRAME, m * SAMPLES_PER_FRAME)))[None].to(dev)
    tokens = net.audio_tokens(wav, n)  # (1, n, 2W+1, D), encoded once for the whole file
    states = torch.from_numpy(offline_states(audio, n, state))[None].to(dev)
    controls = torch.from_numpy(control_vector(expression))[None, None].expand(1, n, -1).to(dev)
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    done = 0
    bar = tqdm(total=n, desc="generate", unit="frame", disable=not progress)
    while done < n:
        if cancelled is not None and cancelled():
            bar.close()
            raise Cancelled("generation cancelled")
        new = min(first_chunk if done == 0 else chunk, n - done)
        ctx = torch.stack(out[-motion:])[None] if motion and out else torch.zeros(1, 0, *sampler.latent_shape, device=dev)
        sl = slice(done - ctx.shape[1], done + new)
        x = sampler.sample(ref, ctx, tokens[:, sl], states[:, sl], controls[:, sl], gen)
        out.extend(x[0].unbind(0))
        done += new
        bar.update(new)
    bar.close()
    return torch.stack(out)[None]
