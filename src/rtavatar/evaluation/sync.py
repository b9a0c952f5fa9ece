"""Sync-C / Sync-D by the SyncNet protocol, with any sync expert that embeds windows.

Protocol (Chung & Zisserman 2016, as used for LSE-C/LSE-D): embed every 5-frame video window
and every matching audio window; for each audio offset d in [-15, 15] frames, average the
distance between video window i and audio window i + d over i; Sync-D is the smallest average
distance, Sync-C (confidence) is the median over offsets minus that minimum, and the offset
at the minimum is the estimated AV offset (0 for a well synced video).

With our expert (`rtavatar train syncnet`) these are *our* Sync-C/Sync-D: same protocol,
different network and training data, so the numbers are not comparable with published LSE-C/D.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.models.syncnet import SyncNet, mouth_crops, sliding_windows
from rtavatar.models.vae import LatentCodec


class SyncScorer(Protocol):
    window: int

    def video_embeddings(self, frames: np.ndarray) -> Tensor:
        """(N, H, W, 3) uint8 face crops -> (N - window + 1, D)."""

    def audio_embeddings(self, audio: np.ndarray, n_frames: int) -> Tensor:
        """16 kHz mono audio of n_frames frames -> (n_frames - window + 1, D)."""


class ExpertScorer:
    """Our trained sync expert."""

    def __init__(self, net: SyncNet, batch: int = 64) -> None:
        self.net, self.batch, self.window = net.eval(), batch, net.cfg.window

    @torch.no_grad()
    def video_embeddings(self, frames: np.ndarray) -> Tensor:
        crops = mouth_crops(LatentCodec.to_tensor(frames), self.net.cfg)
        win = sliding_windows(crops, self.window)
        return torch.cat([self.net.embed_video(win[k : k + self.batch]) for k in range(0, len(win), self.batch)])

    @torch.no_grad()
    def audio_embeddings(self, audio: np.ndarray, n_frames: int) -> Tensor:
        wav = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
        wav[: min(len(audio), wav.size)] = audio[: wav.size]
        per_frame = torch.from_numpy(wav).reshape(n_frames, SAMPLES_PER_FRAME)
        win = sliding_windows(per_frame, self.window).reshape(-1, self.window * SAMPLES_PER_FRAME)
        return torch.cat([self.net.embed_audio(win[k : k + self.batch]) for k in range(0, len(win), self.batch)])


def offset_distances(v: Tensor, a: Tensor, max_offset: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Mean distance between video window i and audio window i + d, for d in [-max, max]."""
    offsets = np.arange(-max_offset, max_offset + 1)
    dists = []
    for d in offsets:
        lo, hi = max(0, -d), min(len(v), len(a) - d)
        dists.append(float((v[lo:hi] - a[lo + d : hi + d]).norm(dim=-1).mean()) if hi > lo else np.nan)
    return offsets, np.array(dists)


def sync_scores(scorer: SyncScorer, frames: np.ndarray, audio: np.ndarray, max_offset: int = 15) -> dict[str, float]:
    """Sync-C, Sync-D and the best AV offset (frames) of one video."""
    if len(frames) < scorer.window + 1:
        raise ValueError(f"sync scores need at least {scorer.window + 1} frames, got {len(frames)}")
    v = scorer.video_embeddings(frames)
    a = scorer.audio_embeddings(audio, len(frames))
    offsets, dists = offset_distances(v, a, max_offset)
    i = int(np.nanargmin(dists))
    return {"sync_c": float(np.nanmedian(dists) - dists[i]), "sync_d": float(dists[i]), "offset": int(offsets[i])}


def load_expert(checkpoint: str | Path, ema: bool = True) -> ExpertScorer:
    """A `train syncnet` run (or one of its checkpoints) as a scorer."""
    import json

    from rtavatar.config import from_dict
    from rtavatar.models.syncnet import SyncNetConfig
    from rtavatar.training.common import load_weights, resolve_checkpoint

    ck = resolve_checkpoint(checkpoint)
    cfg = json.loads((ck / "config.json").read_text())
    net = SyncNet(from_dict(SyncNetConfig, cfg["net"]))
    load_weights(net, ck, ema=ema)
    return ExpertScorer(net)
