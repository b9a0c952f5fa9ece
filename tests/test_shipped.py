"""The model shipped in the package: it loads with no arguments and really lip-syncs.

Quality floors (measured values in docs/RESULTS.md): on a held-out photo clip (the bundled
CC0 portrait's person is never trained on), the inner-lip gap dlib reads on the generated
frames follows the clip's ground-truth opening; on the bundled photo with the bundled speech,
dlib keeps finding the face and the mouth opens for speech more than in silence.
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
APERTURE_FLOOR = 0.5  # Pearson r, generated gap vs ground truth, on the held-out clip
SPEECH_SILENCE_FLOOR = 1.5


@pytest.fixture(scope="module")
def shipped() -> Avatar:
    path = pretrained_path()  # raises with a clear message if the package lost its weights
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size <= 50e6, f"the shipped model is {size / 1e6:.1f} MB (limit 50)"
    return Avatar.from_pretrained()


def test_shipped_model_follows_ground_truth_on_a_held_out_clip(shipped: Avatar, tmp_path: Path) -> None:
    from rtavatar.data.dataset import Dataset
    from rtavatar.data.photos import read_gaps
    from rtavatar.data.synth import SynthConfig, synthesize_dataset

    root = tmp_path / "portraits" / "cc0"  # a held-out folder: this person never trains
    root.mkdir(parents=True)
    shutil.copy(LISA, root / "lisa.jpg")
    cfg = SynthConfig(clips=1, seed=11, seconds=(7.0, 7.5), portraits=str(tmp_path / "portraits"), photo_fraction=1.0,
                      test_fraction=1.0, workers=1)
    synthesize_dataset(cfg, tmp_path / "clip", progress=False)
    clip = Dataset(tmp_path / "clip").load(0)
    assert clip.meta["split"] == "test" and np.std(clip.columns["mouth_open"]) > 0.02
    frames = shipped.generate(clip.frames[0], clip.audio, align="center")
    gaps = read_gaps(frames)
    ok = np.isfinite(gaps)
    assert ok.mean() > 0.9
    r = float(np.corrcoef(gaps[ok], clip.columns["mouth_open"][: len(frames)][ok])[0, 1])
    assert r >= APERTURE_FLOOR, f"aperture r {r:.2f} < {APERTURE_FLOOR}"


def test_shipped_model_on_the_sample_photo(shipped: Avatar) -> None:
    from rtavatar.evaluation.photos import FaceReader, score_photo
    from rtavatar.media import read_audio, read_image

    photo, audio = read_image(LISA), read_audio(SPEECH)
    frames = shipped.generate(photo, audio, paste_back=True)
    assert frames.shape[1:] == photo.shape  # the photo's own framing and size
    row = score_photo(FaceReader(), photo, frames, audio)
    assert row["detect"] >= 0.9 and row["identity"] <= 0.45 and row["sharpness"] >= 0.4
    assert row["speech_silence"] >= SPEECH_SILENCE_FLOOR, row
