"""AvatarNet: the trainable audio encoder + the DiT denoiser as one module (what DDP wraps)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import Tensor, nn

from rtavatar.models.audio import AudioConfig, build_audio_encoder
from rtavatar.models.dit import Conditioning, DiT, DiTConfig


@dataclass
class AvatarNetConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)

    @classmethod
    def preset(cls, name: str) -> "AvatarNetConfig":
        """A DiT size preset (models/dit.PRESETS) with the default audio encoder at its width."""
        from rtavatar.models.dit import PRESETS

        dit = copy.deepcopy(PRESETS[name])
        return cls(dit=dit, audio=AudioConfig(dim=dit.audio_dim))

    @property
    def audio_margin(self) -> int:
        """Video frames of audio context needed on each side of a window (DiT window + conv context)."""
        return self.dit.audio_window + 2


class AvatarNet(nn.Module):
    def __init__(self, cfg: AvatarNetConfig) -> None:
        super().__init__()
        if cfg.audio.dim != cfg.dit.audio_dim:
            raise ValueError(f"audio.dim {cfg.audio.dim} != dit.audio_dim {cfg.dit.audio_dim}")
        self.cfg = cfg
        self.audio_enc = build_audio_encoder(cfg.audio)
        self.dit = DiT(cfg.dit)

    def audio_tokens(self, wav: Tensor, frames: int) -> Tensor:
        """wav (B, (frames + 2 margin) * 640) -> windowed features (B, frames, 2W+1, D)."""
        m, w = self.cfg.audio_margin, self.cfg.dit.audio_window
        feats = self.audio_enc(wav)  # (B, frames + 2m, D)
        return feats.unfold(1, 2 * w + 1, 1).permute(0, 1, 3, 2)[:, m - w : m - w + frames]

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning, wav: Tensor | None = None) -> Tensor:
        """v-prediction; `wav` (with margins) is encoded into cond.audio when given."""
        if wav is not None:
            cond = Conditioning(**{**cond.__dict__, "audio": self.audio_tokens(wav, x.shape[1])})
        return self.dit(x, t, cond)

