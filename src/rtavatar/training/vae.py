"""Stage `vae`: train the autoencoder on dataset frames (L1 + edge loss, random crops)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar.checkpoints import check_run_dir
from rtavatar.config import to_dict
from rtavatar.data.dataset import Dataset
from rtavatar.models.vae import LatentCodec, VAEConfig
from rtavatar.training.common import TrainConfig, on_device, rank_slice, train_loop
from rtavatar.training.data import ClipCache, random_frames


@dataclass
class VAEStageConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch_size=16, lr=1e-3, warmup=50, ema=0.0, ckpt_every=250))
    crop: int = 64  # train on random crops: the model is fully convolutional, crops are 4x cheaper
    edge_weight: float = 0.5


def _edges(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def reconstruction_loss(x: Tensor, y: Tensor, edge_weight: float) -> Tensor:
    """L1 on pixels + L1 on image gradients (keeps lips and eyes sharp)."""
    (dxh, dxw), (dyh, dyw) = _edges(x), _edges(y)
    return F.l1_loss(y, x) + edge_weight * (F.l1_loss(dyh, dxh) + F.l1_loss(dyw, dxw))


def train_vae(cfg: VAEStageConfig, data: str | Path, run: str | Path, resume: bool = False, overwrite: bool = False,
              stop_after: int | None = None) -> dict[str, Any]:
    check_run_dir(Path(run), resume, overwrite)  # before any work: never reuse a run silently
    ds = Dataset(data, split="train")
    cache = ClipCache(ds)
    torch.manual_seed(cfg.train.seed)  # the initial weights too, as every stage: same seed, same run
    codec = LatentCodec(cfg.vae)

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int,
                world: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = random_frames(cache, gen, cfg.train.batch_size)
        if cfg.crop and cfg.crop < x.shape[-1]:
            i, j = (int(v) for v in torch.randint(x.shape[-1] - cfg.crop + 1, (2,), generator=gen))
            x = x[..., i : i + cfg.crop, j : j + cfg.crop]
        x = on_device({"x": x[rank_slice(len(x), rank, world)]}, model)["x"]
        y = model.decode(model.encode(x))
        loss = reconstruction_loss(x, y, cfg.edge_weight)
        return loss, {"l1": float(F.l1_loss(y.detach(), x))}

    return train_loop(run=Path(run), cfg=cfg.train, model=codec, config_dict={"stage": "vae", **to_dict(cfg)},
                      loss_fn=loss_fn, resume=resume, stop_after=stop_after)
