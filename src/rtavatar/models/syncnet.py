"""Our lip-sync expert: a SyncNet-style two-tower network (mouth-region video window vs. audio
window) trained contrastively on in-sync vs. time-shifted pairs (`rtavatar train syncnet`).

It scores sync in evaluation (Sync-C / Sync-D by the SyncNet protocol, rtavatar.evaluation.sync)
and can serve as a discriminator backbone. A third, per-frame tower regresses the mouth
opening (inner-lip gap in IOD, the `mouth_open` column) from one mouth crop: evaluation uses
it to measure the aperture of generated frames, which have no landmarks of their own. Its scores are *ours*: not the published LSE-C/D,
which come from the official SyncNet weights on real faces (evaluation accepts those too).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar.models.audio import LogMel


@dataclass
class SyncNetConfig:
    window: int = 5  # video frames per window (0.2 s at 25 fps), like SyncNet
    mouth_box: tuple[float, float, float, float] = (0.5, 0.75, 0.25, 0.75)  # y0, y1, x0, x1 of the face crop
    crop: tuple[int, int] = (32, 64)  # mouth crop is resized to (h, w)
    n_mels: int = 80
    width: int = 24  # channels of the first stage of each tower (doubles per stage; each stage halves the size)
    dim: int = 128  # embedding size
    # A fourth tower: the mouth's log width relative to the same face at rest, trained on width
    # differences within a clip (so a face's own mouth size cancels). EFT's smile loss reads it.
    width_head: bool = False


def _tower(c_in: int, width: int, dim: int, stages: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = c_in
    for i in range(stages):
        c_out = width * 2**i
        layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), nn.GroupNorm(math.gcd(8, c_out), c_out), nn.SiLU(),
                   nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(math.gcd(8, c_out), c_out), nn.SiLU()]
        c = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, dim))


def aperture_tower(cfg: SyncNetConfig) -> nn.Sequential:
    """The per-frame mouth-opening regressor: (N, 3, h, w) mouth crop -> (N, 1) inner-lip gap in IOD."""
    return _tower(3, max(8, cfg.width // 2), 1, 3)


class ApertureHead(nn.Module):
    """A sync expert's aperture tower on its own, reading whole face crops: what paste mode
    `warp` ships with a model to read the openings it draws (photo/readers.ExpertMouthReader)."""

    def __init__(self, cfg: SyncNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tower = aperture_tower(cfg)

    @classmethod
    def of(cls, expert: "SyncNet") -> "ApertureHead":
        head = cls(expert.cfg)
        head.tower.load_state_dict(expert.aperture.state_dict())
        return head.eval().requires_grad_(False)

    def forward(self, faces: Tensor) -> Tensor:
        """(N, 3, H, W) face crops in [-1, 1], in the training framing -> (N,) mouth opening in IOD."""
        return self.tower(mouth_crops(faces, self.cfg))[:, 0]


class SyncNet(nn.Module):
    """embed_video: (B, T, 3, h, w) mouth crops in [-1, 1]; embed_audio: (B, T * 640) samples.
    Both return L2-normalised (B, dim) embeddings; distance = Euclidean in [0, 2]."""

    def __init__(self, cfg: SyncNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg.n_mels)
        self.video = _tower(3 * cfg.window, cfg.width, cfg.dim, 4)
        self.audio = _tower(1, cfg.width, cfg.dim, 4)
        self.log_temp = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        self.aperture = aperture_tower(cfg)
        self.width_tower = _tower(3, max(8, cfg.width // 2), 1, 3) if cfg.width_head else None

    def forward(self, video: Tensor, audio: Tensor, negatives: Tensor, pair: Tensor | None = None) -> tuple[Tensor | None, ...]:
        """Training pass (through forward, so DDP syncs gradients): embeddings of the video
        windows, their audio, the (B, K, S) shifted audio, the logit scale, the (B, T)
        per-frame aperture estimates, and with the width head the (B, T + 1) log widths of the
        window's frames and of `pair` (B, 3, h, w), another frame of the same clip (else None)."""
        b, k = negatives.shape[:2]
        a = self.embed_audio(torch.cat([audio, negatives.reshape(b * k, -1)]))
        widths = None
        if self.width_tower is not None and pair is not None:
            widths = self.mouth_width(torch.cat([video, pair[:, None]], 1))
        return (self.embed_video(video), a[:b], a[b:].reshape(b, k, -1), self.log_temp.exp().clamp(max=100.0),
                self.mouth_open(video), widths)

    def mouth_open(self, crops: Tensor) -> Tensor:
        """(..., 3, h, w) mouth crops -> (...) estimated inner-lip gap in IOD."""
        return self.aperture(crops.reshape(-1, *crops.shape[-3:])).reshape(crops.shape[:-3])

    def mouth_width(self, crops: Tensor) -> Tensor:
        """(..., 3, h, w) mouth crops -> (...) log mouth width, up to a per-face constant: only
        differences between frames of one face mean anything."""
        if self.width_tower is None:
            raise ValueError("this sync expert has no width head (SyncNetConfig.width_head)")
        return self.width_tower(crops.reshape(-1, *crops.shape[-3:])).reshape(crops.shape[:-3])

    def embed_video(self, crops: Tensor) -> Tensor:
        b, t = crops.shape[:2]
        return F.normalize(self.video(crops.reshape(b, t * 3, *crops.shape[-2:])), dim=-1)

    def embed_audio(self, wav: Tensor) -> Tensor:
        mel = self.mel(wav)  # (B, n_mels, T * 4)
        mel = (mel + 5.0) / 5.0  # roughly centred log-mel
        return F.normalize(self.audio(mel[:, None]), dim=-1)


def mouth_crops(frames: Tensor, cfg: SyncNetConfig) -> Tensor:
    """(..., 3, H, W) face crops in [-1, 1] -> (..., 3, h, w) mouth regions."""
    y0, y1, x0, x1 = cfg.mouth_box
    h, w = frames.shape[-2:]
    m = frames[..., round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]
    lead = m.shape[:-3]
    m = m.reshape(-1, *m.shape[-3:])
    if tuple(m.shape[-2:]) != tuple(cfg.crop):
        m = F.interpolate(m, size=cfg.crop, mode="bilinear", align_corners=False, antialias=True)
    return m.reshape(*lead, *m.shape[-3:])


def decode_mouth(codec: nn.Module, z: Tensor, cfg: SyncNetConfig, margin: int = 3) -> Tensor:
    """(..., C, h, w) VAE latents -> (..., 3, crop h, crop w) mouth crops, differentiably.

    Only the latent rows/columns under the mouth box (plus `margin` latents of context, which
    keeps the crop within ~0.02 of a full decode with the tiny VAE) are decoded: ~1/3 of the
    cost of decoding whole frames, which matters when a loss backpropagates through it."""
    lead, (c, h, w) = z.shape[:-3], z.shape[-3:]
    y0, y1, x0, x1 = cfg.mouth_box
    r0, r1, c0, c1 = round(y0 * h), round(y1 * h), round(x0 * w), round(x1 * w)
    lo_r, lo_c = max(r0 - margin, 0), max(c0 - margin, 0)
    z = z.reshape(-1, c, h, w)[:, :, lo_r: min(r1 + margin, h), lo_c: min(c1 + margin, w)]
    img = codec.decode(z)
    s = img.shape[-1] // z.shape[-1]  # the VAE's downsampling
    crop = img[:, :, (r0 - lo_r) * s: (r1 - lo_r) * s, (c0 - lo_c) * s: (c1 - lo_c) * s]
    if tuple(crop.shape[-2:]) != tuple(cfg.crop):
        crop = F.interpolate(crop, size=cfg.crop, mode="bilinear", align_corners=False, antialias=True)
    return crop.reshape(*lead, *crop.shape[-3:])


def sliding_windows(x: Tensor, window: int) -> Tensor:
    """(N, ...) -> (N - window + 1, window, ...) overlapping windows along the first axis."""
    return x.unfold(0, window, 1).movedim(-1, 1)

