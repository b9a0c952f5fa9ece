"""The synthetic talking-face generator: determinism, lip/speech alignment, identities, dataset I/O."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.cli import main
from rtavatar.data.behavior import STATE_ID, frame_signals, identity_voice, make_timeline, render_audio
from rtavatar.data.dataset import Dataset
from rtavatar.data.face import FaceState, Renderer, render_face, sample_identity
from rtavatar.data.speech import random_sentence, random_voice
from rtavatar.data.synth import SynthConfig, synthesize_dataset
from rtavatar.data.visemes import VISEME_NAMES, VISEMES, VOWEL_VISEMES, _segments_of
from rtavatar.errors import DatasetError
from rtavatar.tts import synthesize

SHORT = (2.0, 3.5)


def _timeline_and_signals(seed: int):
    rng = np.random.default_rng(seed)
    tl = make_timeline(rng, (5.0, 9.0), identity_voice(seed))
    return tl, frame_signals(tl, rng)


def test_same_seed_gives_byte_identical_ground_truth(tmp_path: Path) -> None:
    cfg = SynthConfig(clips=2, seed=11, seconds=SHORT, workers=1)
    synthesize_dataset(cfg, tmp_path / "a", progress=False)
    synthesize_dataset(cfg, tmp_path / "b", progress=False)
    synthesize_dataset(SynthConfig(clips=2, seed=12, seconds=SHORT, workers=1), tmp_path / "c", progress=False)
    for clip in ("000000", "000001"):
        for name in ("meta.json", "audio.wav"):
            a = (tmp_path / "a" / "clips" / clip / name).read_bytes()
            assert a == (tmp_path / "b" / "clips" / clip / name).read_bytes(), f"{clip}/{name} differs for the same seed"
        assert (tmp_path / "a" / "clips" / clip / "meta.json").read_bytes() != (tmp_path / "c" / "clips" / clip / "meta.json").read_bytes()
    fa, fb = Dataset(tmp_path / "a").load(0).frames, Dataset(tmp_path / "b").load(0).frames
    assert np.array_equal(fa, fb)
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (tmp_path / "b" / "manifest.jsonl").read_bytes()


@pytest.mark.parametrize("seed", range(6))
def test_aperture_closed_in_silence_and_opens_at_vowel_onsets(seed: int) -> None:
    tl, sig = _timeline_and_signals(seed)
    n = tl.n_frames
    centres = (np.arange(n) + 0.5) / FPS
    own = [p for pu in tl.utterances if pu.speaker == "self" for p in pu.phonemes()]
    spoken = [p for p in own if p.ipa]
    # Silence: any frame whose centre is >= 100 ms from every spoken phoneme has a closed mouth.
    dist = np.full(n, np.inf)
    for p in spoken:
        dist = np.minimum(dist, np.maximum(0, np.maximum(p.start - centres, centres - p.end)))
    silent = dist >= 0.1
    assert silent.sum() > 10
    assert sig["mouth_open"][silent].max() < 0.01
    # The audio agrees: frames with no energy far from speech are closed too.
    quiet = (sig["energy"] < 1e-4) & silent
    assert np.all(sig["mouth_open"][quiet] < 0.01)
    # Vowel onsets (espeak-ng's phoneme times): open within one frame of the onset.
    checked = 0
    for p in spoken:
        segs = _segments_of(p.ipa)
        if segs[0] not in VOWEL_VISEMES or p.end - p.start < 0.08 or p.start >= tl.duration - 0.1:
            continue
        k = int(np.ceil(p.start * FPS - 0.5))  # first frame whose centre is at or after the onset
        target = VISEMES[segs[0]].open
        got = sig["mouth_open"][k : k + 2].max()
        assert got >= 0.5 * target, f"vowel {p.ipa} at {p.start:.3f}s: open {got:.3f} < half of {target}"
        checked += 1
    if any(s == "speak" for s, _, _ in tl.segments):
        assert checked > 0


def test_states_behave() -> None:
    seen = set()
    for seed in range(8):
        tl, sig = _timeline_and_signals(seed)
        states = sig["state"]
        seen.update(states.tolist())
        assert len(set(states.tolist())) >= 2, "every clip contains a state transition"
        not_speaking = states != STATE_ID["speak"]
        assert sig["mouth_open"][not_speaking].max() < 0.02, "listen/idle keep the mouth closed"
        assert sig["blink"].max() > 0.95, "blinks (with a fully closed frame) happen in every clip"
        own = render_audio(tl, "self")
        assert len(own) == tl.n_frames * SAMPLES_PER_FRAME
        if (states == STATE_ID["listen"]).any():
            assert sig["partner_voice"][states == STATE_ID["listen"]].any()
    assert seen == {0, 1, 2}


def test_every_espeak_phoneme_has_a_viseme() -> None:
    rng = np.random.default_rng(0)
    unknown = set()
    for _ in range(12):
        utt = synthesize(random_sentence(rng), random_voice(rng))
        assert len(utt.audio) > 0 and utt.phonemes
        for p in utt.phonemes:
            if p.ipa and _segments_of(p.ipa) == ["sil"]:
                unknown.add(p.ipa)
    assert not unknown, f"phonemes without a viseme: {unknown}"
    assert set(VISEME_NAMES) == set(VISEMES)


def test_thousand_identities_are_pairwise_distinct() -> None:
    res = 48
    imgs = np.stack([Renderer(sample_identity(s), res).render(FaceState()).astype(np.float32).ravel() / 255 for s in range(1000)])
    sq = (imgs**2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * imgs @ imgs.T
    np.fill_diagonal(d2, np.inf)
    rms = np.sqrt(np.maximum(d2, 0) / imgs.shape[1])
    # Nearest pair still differs by > 4% RMS of full scale (about 10 grey levels per pixel on average).
    assert rms.min() > 0.04, f"closest identities differ by only {rms.min():.4f} RMS"


def test_renderer_draws_what_it_is_told() -> None:
    ident = sample_identity(5)
    r = Renderer(ident, 128)
    closed, opened = r.render(FaceState()), r.render(FaceState(mouth_open=0.45))
    diff = np.abs(closed.astype(int) - opened.astype(int)).sum(-1)
    ys, xs = np.nonzero(diff > 30)
    assert len(ys) > 20
    assert ys.mean() > 64, "opening the mouth changes the lower half of the face"
    blink = np.abs(r.render(FaceState(blink=1.0)).astype(int) - closed.astype(int)).sum(-1)
    ys, _ = np.nonzero(blink > 30)
    assert len(ys) > 5 and ys.max() < 64, "a blink changes only the eye region (upper half)"
    assert render_face(5).shape == (128, 128, 3)


def test_dataset_loads_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert main(["synth-data", "--out", str(out), "--clips", "3", "--seed", "1", "--seconds", "2-3", "--workers", "2", "--quiet",
                 "--test-fraction", "1"]) == 0
    ds = Dataset(out)
    assert len(ds) == 3 and len(Dataset(out, split="test")) == 3  # an all-held-out set
    for i in range(3):
        clip = ds.load(i)
        n = clip.meta["n_frames"]
        assert clip.frames.shape == (n, 128, 128, 3)
        assert len(clip.audio) == n * SAMPLES_PER_FRAME
        assert all(len(v) == n for v in clip.columns.values())
    # Resume: a clip whose meta.json is missing is regenerated; complete clips are left alone.
    keep = out / "clips" / "000000" / "video.mp4"
    before = keep.stat().st_mtime_ns
    (out / "clips" / "000002" / "meta.json").unlink()
    assert main(["synth-data", "--out", str(out), "--clips", "3", "--seed", "1", "--seconds", "2-3", "--workers", "1", "--quiet",
                 "--test-fraction", "1"]) == 0
    assert keep.stat().st_mtime_ns == before
    assert (out / "clips" / "000002" / "meta.json").exists()
    # Different settings into the same directory are refused, not mixed.
    with pytest.raises(ValueError, match="different settings"):
        synthesize_dataset(SynthConfig(clips=3, seed=2, seconds=(2.0, 3.0)), out, progress=False)


def test_held_out_split_uses_unseen_identities_and_sentences(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    synthesize_dataset(SynthConfig(clips=8, seed=3, seconds=SHORT, workers=2, test_fraction=0.5, identities=4), out, progress=False)
    records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    train = {r["identity"] for r in records if r["split"] == "train"}
    test = {r["identity"] for r in records if r["split"] == "test"}
    assert train and test and not (train & test)
    rng = np.random.default_rng(0)
    train_s = {random_sentence(rng, "train") for _ in range(300)}
    test_s = {random_sentence(rng, "test") for _ in range(300)}
    assert not (train_s & test_s)


def test_dataset_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset.json is missing"):
        Dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{")
    (tmp_path / "manifest.jsonl").write_text("")
    with pytest.raises(DatasetError, match="malformed"):
        Dataset(tmp_path)


def test_cli_rejects_bad_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["synth-data", "--out", "x", "--clips", "1", "--seconds", "9-2"])
    assert "seconds range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth-data", "--out", "x", "--clips", "1", "--test-fraction", "1.5"])
    assert "outside [0, 1]" in capsys.readouterr().err


def test_demo_writes_aligned_video(tmp_path: Path) -> None:
    from rtavatar.commands.demo import run_demo
    from rtavatar.media import read_video

    out = tmp_path / "demo.mp4"
    res = run_demo(out, text="Hello there.", seed=3, resolution=64)
    clip = read_video(out)
    assert len(clip.frames) == res["frames"]
    assert abs(len(clip.audio) / 16000 - res["frames"] / FPS) <= 1 / FPS
    assert np.abs(clip.audio).max() > 0.05, "the demo has audible speech"


def test_atomic_write_gives_normal_permissions(tmp_path: Path) -> None:
    from rtavatar.utils import atomic_write

    with atomic_write(tmp_path / "x.txt", "w") as f:
        f.write("hi")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~umask
