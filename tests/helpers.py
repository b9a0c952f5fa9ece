"""Small shared builders for tests (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

from pathlib import Path

from rtavatar.config import from_dict, to_dict
from rtavatar.training.common import TrainConfig
from rtavatar.training.teacher import TeacherConfig


def tiny_teacher_cfg(vae: Path, steps: int, batch: int = 4, lr: float = 1e-3) -> TeacherConfig:
    """A teacher small enough for CPU tests on 64x64 clips (8x8 latents)."""
    cfg = TeacherConfig(vae_checkpoint=str(vae), max_new=3, max_motion=1,
                        train=TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=5, ema=0.9, ckpt_every=10, log_every=5))
    d = to_dict(cfg)
    d["net"]["dit"].update(latent_size=8, dim=48, depth=2, heads=4, audio_dim=32)
    d["net"]["audio"].update(dim=32, hidden=32)
    return from_dict(TeacherConfig, d)


def fixed_clips(data: Path, vae: Path, n: int, frames: int, audio_margin: int) -> dict:
    """A fixed (seeded) batch of n raw latent clips of `frames` frames from the test data."""
    from rtavatar.data.dataset import Dataset
    from rtavatar.training.common import step_generator
    from rtavatar.training.data import LatentClips
    from rtavatar.training.teacher import load_codec

    clips = LatentClips(Dataset(data), load_codec(vae), data.parent / "eval_cache")
    return clips.sample(step_generator(99, 0), n, frames, audio_margin)
