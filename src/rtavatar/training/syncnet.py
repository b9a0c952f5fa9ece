"""Stage `syncnet`: the lip-sync expert, trained contrastively on dataset clips.

Each sample is a 5-frame mouth window and its audio window. The loss is InfoNCE over the
batch (other clips' audio are negatives) plus hard negatives: the same clip's audio shifted
by 3-15 frames, which have the same voice and room, so only timing tells them apart.
Windows are centred on voiced frames with probability p_voiced, since silence carries no
timing information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import check_run_dir
from rtavatar.config import to_dict
from rtavatar.data.dataset import Dataset
from rtavatar.models.syncnet import SyncNet, SyncNetConfig, mouth_crops
from rtavatar.models.vae import LatentCodec
from rtavatar.training.common import TrainConfig, on_device, rank_slice, train_loop
from rtavatar.training.data import ClipCache, log_width_of


@dataclass
class SyncStageConfig:
    net: SyncNetConfig = field(default_factory=SyncNetConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=4000, batch_size=32, lr=5e-4, warmup=100, ema=0.0, ckpt_every=250))
    hard_negatives: int = 2  # shifted-audio negatives per sample
    min_shift: int = 3  # frames; closer shifts overlap the true window too much to be "wrong"
    max_shift: int = 15
    p_voiced: float = 0.8
    aperture_weight: float = 10.0  # MSE on mouth_open (IOD; ~0.1 typical) next to the InfoNCE loss
    width_weight: float = 10.0  # with net.width_head: MSE of log-width differences (window frame vs another frame)


def sample_windows(cache: ClipCache, cfg: SyncStageConfig, gen: torch.Generator, batch: int) -> dict[str, Tensor]:
    """Global batch: mouth windows (B, T, 3, h, w), audio (B, T*640), shifted audio (B, K, T*640)."""
    w, k_neg = cfg.net.window, cfg.hard_negatives
    vids, auds, negs, opens, pairs, widths = [], [], [], [], [], []
    for _ in range(batch):
        clip = cache.get(int(torch.randint(len(cache.ds), (1,), generator=gen)))
        n = clip.n_frames
        voiced = np.flatnonzero(np.asarray(clip.columns.get("voice", np.zeros(n)))[: n - w + 1])
        if len(voiced) and float(torch.rand(1, generator=gen)) < cfg.p_voiced:
            s = int(voiced[int(torch.randint(len(voiced), (1,), generator=gen))])
            s = max(0, min(s - w // 2, n - w))
        else:
            s = int(torch.randint(n - w + 1, (1,), generator=gen))
        vids.append(mouth_crops(LatentCodec.to_tensor(clip.frames[s : s + w]), cfg.net))
        mo = clip.columns.get("mouth_open")  # NaN where a dataset has no aperture ground truth
        opens.append(torch.as_tensor(mo[s : s + w] if mo is not None else np.full(w, np.nan), dtype=torch.float32))
        if cfg.net.width_head:  # another frame of the clip, anywhere: smiles change over seconds
            p = int(torch.randint(n, (1,), generator=gen))
            pairs.append(mouth_crops(LatentCodec.to_tensor(clip.frames[p : p + 1]), cfg.net)[0])
            lw = log_width_of(clip.columns, n)
            widths.append(torch.as_tensor(np.append(lw[s : s + w], lw[p]), dtype=torch.float32))
        wav = torch.from_numpy(np.pad(clip.audio, (0, max(0, n * SAMPLES_PER_FRAME - len(clip.audio)))).astype(np.float32))
        win = lambda start: wav[start * SAMPLES_PER_FRAME : (start + w) * SAMPLES_PER_FRAME]  # noqa: E731
        auds.append(win(s))
        choices = [d for d in range(-cfg.max_shift, cfg.max_shift + 1) if abs(d) >= cfg.min_shift and 0 <= s + d <= n - w]
        picks = [choices[int(torch.randint(len(choices), (1,), generator=gen))] if choices else 0 for _ in range(k_neg)]
        negs.append(torch.stack([win(s + d) for d in picks]))
    out = {"video": torch.stack(vids), "audio": torch.stack(auds), "negatives": torch.stack(negs),
           "mouth_open": torch.stack(opens)}
    if cfg.net.width_head:
        out.update(pair=torch.stack(pairs), log_width=torch.stack(widths))
    return out


def sync_loss(net: nn.Module, batch: dict[str, Tensor], aperture_weight: float = 10.0,
              width_weight: float = 10.0) -> tuple[Tensor, dict[str, float]]:
    """InfoNCE (each video window must pick its own audio among the batch's and its shifted
    ones) + MSE of the per-frame aperture estimate where the data has `mouth_open` + (with a
    width head and a `pair` frame) MSE of each window frame's log width minus the pair's
    against the same difference of the ground truth."""
    v, a, neg, scale, opening, widths = net(batch["video"], batch["audio"], batch["negatives"], batch.get("pair"))
    b = len(v)
    logits = torch.cat([v @ a.T, torch.einsum("bd,bkd->bk", v, neg)], 1) * scale
    target = torch.arange(b, device=v.device)
    loss = F.cross_entropy(logits, target)
    known = ~torch.isnan(batch["mouth_open"])
    ap = F.mse_loss(opening[known], batch["mouth_open"][known]) if known.any() else opening.sum() * 0.0
    loss = loss + aperture_weight * ap
    stats = {}
    if widths is not None:
        diff, want = widths[:, :-1] - widths[:, -1:], batch["log_width"][:, :-1] - batch["log_width"][:, -1:]
        ok = ~torch.isnan(want)
        wd = F.mse_loss(diff[ok], want[ok]) if ok.any() else diff.sum() * 0.0
        loss = loss + width_weight * wd
        stats["width_mse"] = float(wd.detach())
    with torch.no_grad():
        acc = float((logits.argmax(1) == target).float().mean())
        pos = (v - a).norm(dim=-1).mean()
        shifted = (v[:, None] - neg).norm(dim=-1).mean()
    return loss, {"acc": acc, "d_pos": float(pos), "d_shift": float(shifted), "aperture_mse": float(ap.detach()), **stats}


def train_syncnet(cfg: SyncStageConfig, data: str | Path, run: str | Path, resume: bool = False, overwrite: bool = False,
                  stop_after: int | None = None) -> dict[str, Any]:
    check_run_dir(Path(run), resume, overwrite)  # before any work: never reuse a run silently
    cache = ClipCache(Dataset(data, split="train"))
    torch.manual_seed(cfg.train.seed)
    net = SyncNet(cfg.net)

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int,
                world: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = sample_windows(cache, cfg, gen, cfg.train.batch_size)
        mine = rank_slice(cfg.train.batch_size, rank, world)
        return sync_loss(model, on_device({k: v[mine] for k, v in batch.items()}, model), cfg.aperture_weight, cfg.width_weight)

    return train_loop(run=Path(run), cfg=cfg.train, model=net, config_dict={"stage": "syncnet", **to_dict(cfg)},
                      loss_fn=loss_fn, resume=resume, stop_after=stop_after)
