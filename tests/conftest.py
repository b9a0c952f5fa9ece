"""Fixtures shared by test files (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtavatar.data.synth import SynthConfig, synthesize_dataset
from rtavatar.models.vae import VAEConfig
from rtavatar.training.common import TrainConfig
from rtavatar.training.vae import VAEStageConfig, train_vae


@pytest.fixture(scope="session")
def data_and_vae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 synthetic 64x64 clips and a (barely trained) 8-channel VAE run on them."""
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    synthesize_dataset(SynthConfig(clips=3, seed=5, resolution=64, seconds=(2.0, 3.0), workers=1, test_fraction=0.0), data, progress=False)
    vae = root / "vae"
    cfg = VAEStageConfig(vae=VAEConfig(channels=8), train=TrainConfig(steps=2, batch_size=2, ema=0.0, ckpt_every=2), crop=32)
    train_vae(cfg, data, vae)
    return data, vae


@pytest.fixture(scope="session")
def teacher_run(data_and_vae: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher trained for 80 steps on the session's clips."""
    from helpers import tiny_teacher_cfg
    from rtavatar.training.teacher import train_teacher

    data, vae = data_and_vae
    run = tmp_path_factory.mktemp("distill") / "teacher"
    train_teacher(tiny_teacher_cfg(vae, steps=80, lr=2e-3), data, run)
    return run


@pytest.fixture(scope="session")
def student_run(data_and_vae: tuple[Path, Path], teacher_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny teacher distilled for 120 steps (no discriminator)."""
    from rtavatar.training.distill import DistillConfig, train_distill

    data, _ = data_and_vae
    run = tmp_path_factory.mktemp("distill") / "student"
    cfg = DistillConfig(teacher_checkpoint=str(teacher_run), n_timesteps=20,
                        train=TrainConfig(steps=120, batch_size=4, lr=5e-4, warmup=5, ema=0.95, ckpt_every=60, log_every=10))
    train_distill(cfg, data, run)
    return run
