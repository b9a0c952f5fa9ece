"""The avatar discriminator used while distilling: two heads on a frozen feature backbone.

Two backbones (`DiscConfig.backbone`; gradients reach the student through the backbone's
*inputs*, its weights never change):

- `teacher`: the frozen teacher's DiT, run on the clip re-noised to a random level t_d (as in
  adversarial diffusion distillation: the teacher's features are meaningful on noisy latents);
  we read the token features after `layers` blocks; audio features are the teacher audio
  encoder's. Sees the whole face.
- `expert`: the sync expert (`train syncnet`) on the decoded mouth: per frame, its video
  tower's embedding of the 5-frame window centred on the frame (edge frames repeated) as the
  one token, and its audio tower's embedding of that window's audio. Sees only the mouth,
  through features trained for exactly lip-audio agreement.

Heads:

- **lip-audio head** (projection discriminator, Miyato & Koyama 2018): per frame, the mean
  feature of the tokens inside the mouth box, h = MLP(mouth), scored as w.h + <h, P a> where
  a is the backbone's audio feature of that frame. Real in-sync clips are "real"; student
  clips and real clips with audio shifted by `shift` frames are "fake".
- **motion head**: per-frame mean of all tokens, two temporal convolutions over the clip,
  averaged: judges real motion against stiff or jittery generated motion.

Hinge losses, optional R1 on the real features. Either head can be switched off for ablations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.diffusion import add_noise
from rtavatar.models.dit import Conditioning
from rtavatar.models.syncnet import SyncNet, decode_mouth


@dataclass
class DiscConfig:
    backbone: str = "teacher"  # "teacher" or "expert" (module docstring)
    expert_checkpoint: str = ""  # the `train syncnet` run for backbone "expert"
    lip_head: bool = True
    motion_head: bool = True
    layers: tuple[int, ...] = (2, 4)  # teacher backbone: read features after these blocks (1-based; clipped to the depth)
    hidden: int = 128
    t_min: float = 0.05  # re-noising level range for the teacher backbone
    t_max: float = 0.6
    shift: int = 3  # frames of audio shift for the lip head's "real video, wrong audio" negatives
    # Learning rate of the heads = lr_mult x the student's. The heads start from scratch beside a
    # trained student: at 1x (lr 1e-4) their hinge loss stayed at chance (3.9-4.0 of 4.0) for
    # 300 CPU distillation steps on either backbone (docs/RESULTS.md).
    lr_mult: float = 10.0
    r1: float = 0.0  # > 0: R1 penalty (r1/2 |grad of the real scores w.r.t. the real features|^2)
    mouth_box: tuple[float, float, float, float] = (0.5, 0.75, 0.25, 0.75)


class Backbone(Protocol):
    dim: int  # feature width per token
    audio_dim: int
    grid: int  # tokens per frame = grid * grid

    def audio(self, wav: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        """wav with the model's audio margins -> (per-frame audio features (B, F, audio_dim) for
        the lip head, whatever `features` needs of the audio)."""

    def features(self, x: Tensor, cond: Conditioning, audio: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Model-space clips (B, F, C, h, w) -> token features (B, F, grid^2, dim)."""


class TeacherBackbone:
    """The frozen teacher (AvatarNet): DiT token features after `layers` on the re-noised clip."""

    def __init__(self, teacher: nn.Module, layers: tuple[int, ...]) -> None:
        d = teacher.cfg.dit
        self.net = teacher
        self.layers = sorted({min(max(1, k), d.depth) for k in layers})
        self.dim, self.audio_dim, self.grid = d.dim * len(self.layers), teacher.cfg.audio.dim, d.latent_size // d.patch_size

    def audio(self, wav: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        tokens = self.net.audio_tokens(wav, frames)
        return tokens.mean(2), tokens

    def features(self, x: Tensor, cond: Conditioning, audio: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        t = t[:, None].expand(-1, x.shape[1])
        grabbed: list[Tensor] = []
        blocks = self.net.dit.blocks
        hooks = [blocks[k - 1].register_forward_hook(lambda m, i, o: grabbed.append(o)) for k in self.layers]
        try:
            self.net.dit(add_noise(x, eps, t), t, Conditioning(**{**cond.__dict__, "audio": audio}))
        finally:
            for hk in hooks:
                hk.remove()
        return torch.cat(grabbed, -1)

    def to(self, device: torch.device) -> "TeacherBackbone":
        self.net.to(device)
        return self


class ExpertBackbone:
    """The frozen sync expert on the decoded mouth region (one token per frame)."""

    def __init__(self, expert: SyncNet, codec: nn.Module, to_latents: Callable[[Tensor, Tensor], Tensor],
                 audio_margin: int) -> None:
        self.expert, self.codec = expert.eval().requires_grad_(False), codec.eval().requires_grad_(False)
        self.to_latents, self.margin = to_latents, audio_margin  # to_latents(model-space x, cond.ref_latent)
        self.dim = self.audio_dim = expert.cfg.dim
        self.grid = 1

    def audio(self, wav: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        w, n = self.expert.cfg.window, SAMPLES_PER_FRAME
        start = (self.margin - w // 2) * n  # the window centred on the clip's first frame
        win = wav[:, start: start + (frames + w - 1) * n].unfold(1, w * n, n)  # (B, F, w * 640)
        emb = self.expert.embed_audio(win.reshape(-1, w * n)).reshape(len(wav), frames, -1)
        return emb, emb

    def features(self, x: Tensor, cond: Conditioning, audio: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        crops = decode_mouth(self.codec, self.to_latents(x, cond.ref_latent), self.expert.cfg)  # (B, F, 3, h, w)
        w = self.expert.cfg.window
        idx = (torch.arange(x.shape[1], device=x.device)[:, None] + torch.arange(w, device=x.device) - w // 2).clamp(0, x.shape[1] - 1)
        win = crops[:, idx]  # (B, F, w, 3, h, w)
        return self.expert.embed_video(win.flatten(0, 1)).reshape(x.shape[0], x.shape[1], 1, -1)

    def to(self, device: torch.device) -> "ExpertBackbone":
        self.expert.to(device)
        self.codec.to(device)
        return self


class AvatarDiscriminator(nn.Module):
    def __init__(self, cfg: DiscConfig, dim: int, audio_dim: int, grid: int) -> None:
        super().__init__()
        self.cfg, self.grid = cfg, grid
        h = cfg.hidden
        y0, y1, x0, x1 = cfg.mouth_box
        rows = torch.arange(round(y0 * grid), max(round(y1 * grid), round(y0 * grid) + 1))
        cols = torch.arange(round(x0 * grid), max(round(x1 * grid), round(x0 * grid) + 1))
        self.register_buffer("mouth_tokens", (rows[:, None] * grid + cols[None]).flatten(), persistent=False)
        self.lip = nn.Sequential(nn.Linear(dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU()) if cfg.lip_head else None
        self.lip_out = nn.Linear(h, 1) if cfg.lip_head else None
        self.audio_proj = nn.Linear(audio_dim, h, bias=False) if cfg.lip_head else None
        self.motion = nn.Sequential(nn.Conv1d(dim, h, 3, padding=1), nn.SiLU(), nn.Conv1d(h, h, 3, padding=1), nn.SiLU(),
                                    nn.Conv1d(h, 1, 1)) if cfg.motion_head else None

    @classmethod
    def on(cls, cfg: DiscConfig, backbone: Backbone) -> "AvatarDiscriminator":
        return cls(cfg, backbone.dim, backbone.audio_dim, backbone.grid)

    def forward(self, feats: Tensor, audio: Tensor | None) -> dict[str, Tensor]:
        """Per-clip scores (B,) of each head; audio (B, F, A) per-frame features for the lip head."""
        out = {}
        if self.lip is not None and audio is not None:
            h = self.lip(feats[:, :, self.mouth_tokens].mean(2))  # (B, F, H)
            out["lip"] = (self.lip_out(h).squeeze(-1) + (h * self.audio_proj(audio)).sum(-1)).mean(1)
        if self.motion is not None:
            out["motion"] = self.motion(feats.mean(2).transpose(1, 2)).mean((1, 2))
        return out


def hinge_d(real: Tensor, fakes: list[Tensor]) -> Tensor:
    return F.relu(1 - real).mean() + sum(F.relu(1 + f).mean() for f in fakes) / len(fakes)


def adversarial_losses(disc: AvatarDiscriminator, backbone: Backbone, real: Tensor, fake: Tensor, cond: Conditioning,
                       wav: Tensor, eps: Tensor, t_d: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
    """(discriminator loss, generator loss, scalars) for one batch.

    real / fake: (B, F, C, h, w) model-space clips (fake carries the student's gradient);
    the discriminator loss sees fake detached, the generator loss sees the discriminator's
    weights detached, so one backward pass trains both without mixing their gradients.
    """
    f, shift = real.shape[1], disc.cfg.shift
    late = torch.roll(wav, shifts=shift * SAMPLES_PER_FRAME, dims=1)
    late[:, : shift * SAMPLES_PER_FRAME] = 0
    audio, ctx = backbone.audio(wav, f)
    audio_late, _ = backbone.audio(late, f)
    feats = lambda x: backbone.features(x, cond, ctx, eps, t_d)  # noqa: E731
    with torch.no_grad():
        f_real = feats(real)  # the heads learn from it; the backbone stays frozen
    f_fake = feats(fake)
    if disc.cfg.r1 > 0:
        f_real.requires_grad_(True)
    s_real, s_fake_d = disc(f_real, audio), disc(f_fake.detach(), audio)
    s_late = disc(f_real, audio_late) if "lip" in s_real else {}
    frozen = {k: v.detach() for k, v in disc.named_parameters()}
    s_fake_g = torch.func.functional_call(disc, frozen, (f_fake, audio))  # weights detached: only the student learns
    d_loss = real.new_zeros(())
    g_loss = real.new_zeros(())
    stats: dict[str, float] = {}
    for head in s_real:
        fakes = [s_fake_d[head]] + ([s_late[head]] if head == "lip" else [])
        d_loss = d_loss + hinge_d(s_real[head], fakes)
        g_loss = g_loss - s_fake_g[head].mean()
        stats[f"d_{head}_real"] = float(s_real[head].detach().mean())
        stats[f"d_{head}_fake"] = float(s_fake_d[head].detach().mean())
    if disc.cfg.r1 > 0:  # on the backbone's features (feature-space R1, as the backbone is frozen)
        (grad,) = torch.autograd.grad(sum(v.sum() for v in s_real.values()), f_real, create_graph=True)
        r1 = grad.pow(2).flatten(1).sum(1).mean()
        d_loss = d_loss + 0.5 * disc.cfg.r1 * r1
        stats["r1"] = float(r1.detach())
    return d_loss, g_loss, stats



def adversarial_term(disc: AvatarDiscriminator, backbone: Backbone, x0: Tensor, pred: Tensor, motion: int, cond: Conditioning,
                     wav: Tensor, noise: dict[str, Tensor], weight: float) -> tuple[Tensor, dict[str, float]]:
    """What a stage adds to its loss: D loss + weight x G loss, judging the generator's new
    frames `pred` (motion frames taken from the real clip x0); noise holds eps_d and t_d."""
    fake = torch.cat([x0[:, :motion], pred[:, motion:]], 1)
    d_loss, g_loss, stats = adversarial_losses(disc, backbone, x0, fake, cond, wav, noise["eps_d"], noise["t_d"])
    return d_loss + weight * g_loss, {**stats, "g_loss": float(g_loss.detach()), "d_loss": float(d_loss.detach())}
