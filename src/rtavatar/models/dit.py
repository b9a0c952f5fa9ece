"""The denoiser: a spatio-temporal diffusion transformer over patchified video latents.

Input: latents of F frames (motion frames as clean context + new frames to generate), each
frame with its own noise level. Each block (DESIGN.md §2):

  1. spatial self-attention over a frame's tokens *plus the reference tokens* (the DiT form of
     ReferenceNet; the reference's per-layer K/V are computed once per avatar and cached);
     with `ref_concat` the reference's patch embedding is also added to every frame's input
     tokens (spatially aligned, so identity is copied from the first few hundred steps),
  2. temporal self-attention across frames at each spatial position (RoPE over frame index,
     so any clip length works),
  3. cross-attention from each frame's tokens to that frame's audio tokens,
  4. MLP,

each sub-layer modulated by adaLN-Zero from a *per-frame* conditioning vector (timestep +
state label + expression controls + guidance-scale embedding). Only Linear layers in the hot
path, so int8/fp8 quantization applies everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar.models.conditioning import CONTROLS, STATES, Conditioning

__all__ = ["Conditioning", "DiT", "DiTConfig", "ReferenceCache", "PRESETS"]

N_STATES = len(STATES)
N_CONTROLS = len(CONTROLS)


@dataclass
class DiTConfig:
    latent_channels: int = 4
    latent_size: int = 16  # 128 px / 8
    patch_size: int = 2
    dim: int = 256
    depth: int = 5
    heads: int = 4
    mlp_ratio: float = 4.0
    audio_dim: int = 128  # width of the audio encoder's per-frame features
    audio_window: int = 2  # each frame attends to audio of frames i-W .. i+W
    n_states: int = N_STATES
    n_controls: int = N_CONTROLS
    max_frames: int = 32  # longest clip (motion + new) trained on; RoPE itself has no limit
    ref_concat: bool = True  # also add the reference's patch embedding to every frame's tokens
    # Also add the frame's pooled audio window to its adaLN conditioning vector. Measured: with
    # cross-attention alone a tiny teacher's mouth error at high noise was the same with and
    # without audio after 3,300 steps (docs/BENCHMARKS.md); adaLN is the path the model learns
    # fastest (pose from controls is learned within a few hundred steps). Off by default only so
    # that checkpoints from before it load; the presets and shipped configs turn it on.
    audio_adaln: bool = False
    gradient_checkpointing: bool = False

    @property
    def tokens_per_frame(self) -> int:
        return (self.latent_size // self.patch_size) ** 2


PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(audio_adaln=True),
    "base": DiTConfig(latent_size=32, dim=512, depth=12, heads=8, audio_dim=256, audio_adaln=True),
    "paper": DiTConfig(latent_size=64, dim=1024, depth=24, heads=16, audio_dim=384, audio_adaln=True, gradient_checkpointing=True),
}


# ---------------------------------------------------------------------------- pieces
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of continuous t in [0, 1] (scaled to 0..1000 like DDPM steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope(x: Tensor, pos: Tensor) -> Tensor:
    """Rotary position embedding over the last dim of x (..., L, Dh) at integer positions pos (L,)."""
    dh = x.shape[-1]
    freqs = 1.0 / (10_000 ** (torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh))
    ang = pos.float()[:, None] * freqs[None]  # (L, Dh/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.flatten(-2)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention with separate q and kv inputs (self-attention: pass the same tensor)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: Tensor) -> Tensor:  # (N, L, D) -> (N, H, L, Dh)
        n, length, d = x.shape
        return x.view(n, length, self.heads, d // self.heads).transpose(1, 2)

    def kv_of(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, pos: Tensor | None = None) -> Tensor:
        q = self.split(self.q(x))
        if pos is not None:
            q, k = rope(q, pos), rope(k, pos)
        o = F.scaled_dot_product_attention(q, k, v)
        n, h, length, dh = o.shape
        return self.out(o.transpose(1, 2).reshape(n, length, h * dh))


class Block(nn.Module):
    fsdp_methods = ("reference_kv",)  # runs this block's weights outside forward (training/sharding.py)

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norms = nn.ModuleList([nn.LayerNorm(d, elementwise_affine=False, eps=1e-6) for _ in range(4)])
        self.spatial = Attention(d, cfg.heads)
        self.temporal = Attention(d, cfg.heads)
        self.cross = Attention(d, cfg.heads)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        # adaLN-Zero: shift, scale, gate for each of the 4 sub-layers; zero-init => identity block.
        self.ada = nn.Linear(d, 12 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def reference_kv(self, ref: Tensor, ref_cond: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Advance the reference tokens through this block (self-attention + MLP) and return
        (next reference tokens, this layer's reference K/V for the frames' spatial attention)."""
        m = self.ada(F.silu(ref_cond))[:, None].chunk(12, dim=-1)
        h = modulate(self.norms[0](ref), m[0], m[1])
        k, v = self.spatial.kv_of(h)
        ref = ref + m[2] * self.spatial(h, k, v)
        h = modulate(self.norms[3](ref), m[9], m[10])
        ref = ref + m[11] * self.mlp(h)
        # K/V of the *input* of this layer's spatial attention, so frames see what ref saw.
        return ref, (k, v)

    def forward(self, x: Tensor, c: Tensor, ref_kv: tuple[Tensor, Tensor], audio: Tensor, frame_pos: Tensor) -> Tensor:
        """x: (B, F, P, D) tokens; c: (B, F, D) per-frame conditioning; audio: (B, F, A, D)."""
        b, f, p, d = x.shape
        m = self.ada(F.silu(c))[:, :, None].chunk(12, dim=-1)  # each (B, F, 1, D)
        # 1. spatial attention over [frame tokens ; reference tokens]
        h = modulate(self.norms[0](x), m[0], m[1]).reshape(b * f, p, d)
        k_s, v_s = self.spatial.kv_of(h)
        k_r, v_r = ref_kv  # (B, H, R, Dh)
        k_r = k_r.repeat_interleave(f, dim=0)
        v_r = v_r.repeat_interleave(f, dim=0)
        att = self.spatial(h, torch.cat([k_s, k_r], 2), torch.cat([v_s, v_r], 2))
        x = x + m[2] * att.view(b, f, p, d)
        # 2. temporal attention across frames at each spatial position (RoPE over frame index)
        h = modulate(self.norms[1](x), m[3], m[4]).permute(0, 2, 1, 3).reshape(b * p, f, d)
        k_t, v_t = self.temporal.kv_of(h)
        att = self.temporal(h, k_t, v_t, pos=frame_pos)
        x = x + m[5] * att.view(b, p, f, d).permute(0, 2, 1, 3)
        # 3. cross-attention to this frame's audio window
        h = modulate(self.norms[2](x), m[6], m[7]).reshape(b * f, p, d)
        k_a, v_a = self.cross.kv_of(audio.reshape(b * f, audio.shape[2], d))
        x = x + m[8] * self.cross(h, k_a, v_a).view(b, f, p, d)
        # 4. MLP
        x = x + m[11] * self.mlp(modulate(self.norms[3](x), m[9], m[10]))
        return x


@dataclass
class ReferenceCache:
    """What a reference portrait contributes, computed once per avatar."""

    kv: list[tuple[Tensor, Tensor]]  # per layer, (B, H, R, Dh) each
    tokens: Tensor  # (B, P, D) added to every frame's input tokens (zeros when ref_concat is off / null)


def _keep(mask: Tensor | None, real: Tensor, null: Tensor) -> Tensor:
    """Per-sample choice between real and null inputs (mask (B,) broadcast over the rest)."""
    if mask is None:
        return real
    return torch.where(mask.reshape(-1, *([1] * (real.dim() - 1))), real, null.expand_as(real))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, pdim = cfg.dim, cfg.latent_channels * cfg.patch_size**2
        self.patch_in = nn.Linear(pdim, d)
        self.pos = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)  # spatial position
        self.ref_in = nn.Linear(pdim, d)
        self.ref_tag = nn.Parameter(torch.zeros(d))  # marks reference tokens apart from frame tokens
        self.ref_add = nn.Linear(pdim, d) if cfg.ref_concat else None
        self.null_ref = nn.Parameter(torch.randn(cfg.tokens_per_frame, d) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.g_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        nn.init.zeros_(self.g_mlp[2].weight)  # guidance embedding starts at zero (student init = teacher)
        nn.init.zeros_(self.g_mlp[2].bias)
        self.state_emb = nn.Embedding(cfg.n_states + 1, d)  # last index = dropped label
        self.ctrl_mlp = nn.Sequential(nn.Linear(cfg.n_controls, d), nn.SiLU(), nn.Linear(d, d))
        self.audio_cond = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if cfg.audio_adaln else None
        if self.audio_cond is not None:  # zero-init: adding the pathway to a trained model changes nothing at first
            nn.init.zeros_(self.audio_cond[2].weight)
            nn.init.zeros_(self.audio_cond[2].bias)
        self.null_ctrl = nn.Parameter(torch.zeros(d))
        self.ref_cond = nn.Parameter(torch.zeros(d))  # conditioning of the reference stream (clean, t=0)
        self.audio_in = nn.Linear(cfg.audio_dim, d)
        self.audio_pos = nn.Parameter(torch.randn(2 * cfg.audio_window + 1, d) * 0.02)
        self.null_audio = nn.Parameter(torch.zeros(2 * cfg.audio_window + 1, d))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, pdim)
        for m in (self.ada_out, self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ (un)patchify
    def patchify(self, z: Tensor) -> Tensor:
        """(..., C, H, W) -> (..., P, C*p*p)."""
        p = self.cfg.patch_size
        *lead, c, h, w = z.shape
        z = z.reshape(-1, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return z.reshape(*lead, (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: Tensor) -> Tensor:
        p, c, s = self.cfg.patch_size, self.cfg.latent_channels, self.cfg.latent_size
        *lead, n, _ = x.shape
        g = s // p
        x = x.reshape(-1, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(*lead, c, s, s)

    # ------------------------------------------------------------------ reference
    def encode_reference(self, ref_latent: Tensor | None, batch: int | None = None) -> ReferenceCache:
        """Per-layer reference K/V (+ input tokens): compute once per avatar, reuse for every chunk.

        ref_latent: (B, C, H, W) or None for the null reference (CFG on the reference).
        """
        if ref_latent is None:
            b = batch or 1
            r = self.null_ref[None].expand(b, -1, -1)
            tokens = torch.zeros(b, self.cfg.tokens_per_frame, self.cfg.dim, device=r.device, dtype=r.dtype)
        else:
            patches = self.patchify(ref_latent)
            r = self.ref_in(patches) + self.pos + self.ref_tag
            tokens = self.ref_add(patches) if self.ref_add is not None else torch.zeros_like(r)
        cond = self.ref_cond[None].expand(r.shape[0], -1)
        kvs = []
        for blk in self.blocks:
            r, kv = blk.reference_kv(r, cond)
            kvs.append(kv)
        return ReferenceCache(kvs, tokens)

    # ------------------------------------------------------------------ forward
    def frame_conditioning(self, t: Tensor, cond: Conditioning, audio: Tensor | None = None) -> Tensor:
        """Per-frame vector (B, F, D): timestep + state + controls + guidance (+ pooled audio
        tokens (B, F, A, D), after dropout, when audio_adaln)."""
        b, f = t.shape
        c = self.t_mlp(timestep_embedding(t, 256))
        state = cond.state if cond.state is not None else torch.full((b, f), self.cfg.n_states, dtype=torch.long, device=t.device)
        c = c + self.state_emb(state)
        c = c + (_keep(cond.keep_controls, self.ctrl_mlp(cond.controls), self.null_ctrl) if cond.controls is not None else self.null_ctrl)
        if cond.guidance is not None:
            g = cond.guidance.reshape(b, -1).expand(b, f) / 20.0  # scales ~0..20 -> 0..1 like t
            c = c + self.g_mlp(timestep_embedding(g, 256))
        if self.audio_cond is not None and audio is not None:
            c = c + self.audio_cond(audio.mean(2))
        return c

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x: (B, F, C, H, W) noisy latents; t: (B, F) per-frame noise level in [0, 1].

        Returns the v-prediction (B, F, C, H, W) for every frame.
        """
        b, f = x.shape[:2]
        h = self.patch_in(self.patchify(x)) + self.pos  # (B, F, P, D)
        if cond.audio is not None:
            a = _keep(cond.keep_audio, self.audio_in(cond.audio) + self.audio_pos, self.null_audio)
        else:
            a = self.null_audio.expand(b, f, -1, -1)
        c = self.frame_conditioning(t, cond, a)
        ref = cond.ref_cache if cond.ref_cache is not None else self.encode_reference(cond.ref_latent, b)
        if cond.keep_ref is not None:
            null = self.encode_reference(None, b)
            ref = ReferenceCache(
                [(_keep(cond.keep_ref, k, nk), _keep(cond.keep_ref, v, nv)) for (k, v), (nk, nv) in zip(ref.kv, null.kv)],
                _keep(cond.keep_ref, ref.tokens, null.tokens),
            )
        h = h + ref.tokens[:, None]
        frame_pos = torch.arange(f, device=x.device)
        for blk, kv in zip(self.blocks, ref.kv):
            if self.cfg.gradient_checkpointing and self.training:
                h = torch.utils.checkpoint.checkpoint(blk, h, c, kv, a, frame_pos, use_reentrant=False)
            else:
                h = blk(h, c, kv, a, frame_pos)
        shift, scale = self.ada_out(F.silu(c))[:, :, None].chunk(2, dim=-1)
        return self.unpatchify(self.out(modulate(self.norm_out(h), shift, scale)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_frame(cfg: DiTConfig, frames: int = 8) -> float:
    """Approximate forward FLOPs per generated frame (2 x multiply-adds of Linear + attention)."""
    d, p, r = cfg.dim, cfg.tokens_per_frame, cfg.tokens_per_frame
    a = 2 * cfg.audio_window + 1
    mlp = 2 * d * int(d * cfg.mlp_ratio)
    per_token_linear = 4 * d * d + 4 * d * d + 2 * d * d + mlp  # spatial qkv+o, temporal, cross q+o, mlp
    attn = 2 * d * (p + r) + 2 * d * frames + 2 * d * a  # scores + weighted sums per token
    block = p * (per_token_linear + 2 * attn) + a * 2 * d * d + 12 * d * d
    return 2.0 * cfg.depth * block
