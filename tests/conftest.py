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
