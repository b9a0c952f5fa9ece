"""Sync-C / Sync-D by the SyncNet protocol, with any sync expert that embeds windows.

Protocol (Chung & Zisserman 2016, as used for LSE-C/LSE-D): embed every 5-frame video window
and every matching audio window; for each audio offset d in [-15, 15] frames, average the
distance between video window i and audio window i + d over i (zero features past the ends);
Sync-D is the smallest average distance, Sync-C (confidence) is the median over offsets minus
that minimum, and the offset at the minimum is the estimated AV offset: 0 for a well synced
video, +k when the audio lags the video by k frames (the reference script prints -k).

`OfficialSyncNetScorer` (official_syncnet.py) runs the same protocol with the official weights.

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
    def mouth_open(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 face crops -> (N,) estimated inner-lip gap in IOD."""
        crops = mouth_crops(LatentCodec.to_tensor(frames), self.net.cfg)
        return torch.cat([self.net.mouth_open(crops[k : k + self.batch]) for k in range(0, len(crops), self.batch)]).numpy()

    @torch.no_grad()
    def audio_embeddings(self, audio: np.ndarray, n_frames: int) -> Tensor:
        wav = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
        wav[: min(len(audio), wav.size)] = audio[: wav.size]
        per_frame = torch.from_numpy(wav).reshape(n_frames, SAMPLES_PER_FRAME)
        win = sliding_windows(per_frame, self.window).reshape(-1, self.window * SAMPLES_PER_FRAME)
        return torch.cat([self.net.embed_audio(win[k : k + self.batch]) for k in range(0, len(win), self.batch)])


def offset_distances(v: Tensor, a: Tensor, max_offset: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Mean over video windows i of the distance to audio window i + d, for d in [-max, max].

    As in the reference implementation, audio features beyond either end are zero vectors
    (so every offset averages over all windows, and far offsets pay for the padding).
    """
    offsets = np.arange(-max_offset, max_offset + 1)
    a_pad = torch.cat([a.new_zeros(max_offset, a.shape[1]), a, a.new_zeros(max_offset + max(0, len(v) - len(a)), a.shape[1])])
    idx = torch.arange(len(v))[:, None] + torch.arange(2 * max_offset + 1)[None]  # (N, 2m+1) into a_pad
    dists = (v[:, None] - a_pad[idx]).norm(dim=-1).mean(0)
    return offsets, dists.numpy().astype(np.float64)


def sync_scores(scorer: SyncScorer, frames: np.ndarray, audio: np.ndarray, max_offset: int = 15,
                video: Tensor | None = None) -> dict[str, float]:
    """Sync-C, Sync-D and the best AV offset (frames) of one video (`video`: its video
    embeddings, when the caller already has them)."""
    if len(frames) < scorer.window + 1:
        raise ValueError(f"sync scores need at least {scorer.window + 1} frames, got {len(frames)}")
    v = scorer.video_embeddings(frames) if video is None else video
    a = scorer.audio_embeddings(audio, len(frames))
    offsets, dists = offset_distances(v, a, max_offset)
    i = int(np.argmin(dists))
    return {"sync_c": float(np.median(dists) - dists[i]), "sync_d": float(dists[i]), "offset": int(offsets[i])}


def load_expert(checkpoint: str | Path, ema: bool = True) -> ExpertScorer:
    """A `train syncnet` run (or one of its checkpoints) as a scorer."""
    from rtavatar.config import from_dict
    from rtavatar.models.syncnet import SyncNetConfig
    from rtavatar.checkpoints import load_weights, read_run_config

    ck, _, cfg = read_run_config(checkpoint)
    net = SyncNet(from_dict(SyncNetConfig, cfg["net"]))
    load_weights(net, ck, ema=ema)
    return ExpertScorer(net)
