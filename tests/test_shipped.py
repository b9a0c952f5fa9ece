"""The model shipped in the package: it loads with no arguments, keeps the photo, and the
floor it has to reach to count as lip-syncing.

Quality floor (measured values in docs/RESULTS.md): on a held-out photo clip (the bundled
CC0 portrait's person is never trained on), the darkness of the generated mouth box follows
the clip's ground-truth opening (r >= 0.5; the ground truth's own frames score 0.86 with the
same proxy, random weights about 0, photo-v2 0.33, photo-v3 0.70, photo-v4 0.65, photo-v5 0.78). dlib
cannot read the 128 px generated faces themselves.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from rtavatar.checkpoints import pretrained_path
from rtavatar.engine import Avatar

LISA = Path(str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))
SPEECH = Path(str(files("rtavatar") / "assets" / "speech" / "hello.wav"))
APERTURE_FLOOR = 0.5  # Pearson r, generated mouth darkness vs ground-truth opening, on the held-out clip


@pytest.fixture(scope="module")
def shipped() -> Avatar:
    path = pretrained_path()  # raises with a clear message if the package lost its weights
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 50e6, f"the shipped model is {size / 1e6:.1f} MB (limit 50)"
    return Avatar.from_pretrained()


def test_shipped_model_keeps_the_photo(shipped: Avatar) -> None:
    """The sample photo comes back at its own framing and size, the same person, sharp, and (the
    default warp paste) its lips part with the speech: 0.55 / 2.1x measured on these 4 s (photo-v5)."""
    from rtavatar.evaluation.photos import FaceReader, score_photo
    from rtavatar.media import read_audio, read_image

    photo, audio = read_image(LISA), read_audio(SPEECH)
    frames = shipped.generate(photo, audio[: 4 * 16000], paste=True)
    assert frames.shape[1:] == photo.shape
    row = score_photo(FaceReader(), photo, frames, audio[: 4 * 16000])
    assert row["detect"] >= 0.9 and row["identity"] <= 0.45 and row["sharpness"] >= 0.4, row
    assert row["gap_energy_r"] >= 0.4 and row["speech_silence"] >= 1.5, row
    # The warp reads with the model's own aperture head, its gain calibrated (`rtavatar calibrate-warp`).
    assert shipped.bundle.cfg.warp_reader == "expert" and shipped.bundle.reader is not None
    assert 0.5 < shipped.bundle.cfg.warp_gain < 2.0


def mouth_darkness(frames: np.ndarray) -> np.ndarray:
    """How dark the mouth box of the training framing is, per frame (an open mouth is dark)."""
    from rtavatar.photo.align import EYE_MOUTH_FRAC, EYE_Y, IOD_FRAC

    r = frames.shape[1]
    cy, hw, hh = int((EYE_Y + EYE_MOUTH_FRAC) * r), int(0.6 * IOD_FRAC * r), int(0.35 * IOD_FRAC * r)
    box = frames[:, cy - hh : cy + hh, r // 2 - hw : r // 2 + hw].astype(np.float32).mean(-1)
    return -np.percentile(box.reshape(len(frames), -1), 10, axis=1)


def test_shipped_model_lip_syncs_a_held_out_clip(shipped: Avatar, tmp_path: Path) -> None:
    from rtavatar.data.dataset import Dataset
    from rtavatar.data.synth import SynthConfig, synthesize_dataset

    root = tmp_path / "portraits" / "cc0"  # a held-out folder: this person never trains
    root.mkdir(parents=True)
    shutil.copy(LISA, root / "lisa.jpg")
    cfg = SynthConfig(clips=1, seed=11, seconds=(7.0, 7.5), portraits=str(tmp_path / "portraits"), photo_fraction=1.0,
                      test_fraction=1.0, workers=1)
    synthesize_dataset(cfg, tmp_path / "clip", progress=False)
    clip = Dataset(tmp_path / "clip").load(0)
    truth = clip.columns["mouth_open"]
    assert clip.meta["split"] == "test" and np.std(truth) > 0.02
    assert np.corrcoef(mouth_darkness(clip.frames), truth)[0, 1] > 0.8  # the proxy reads the ground truth (0.86)
    frames = shipped.generate(clip.frames[0], clip.audio, align="center")
    r = float(np.corrcoef(mouth_darkness(frames), truth[: len(frames)])[0, 1])
    assert r >= APERTURE_FLOOR, f"mouth-darkness r {r:.2f} < {APERTURE_FLOOR}"
