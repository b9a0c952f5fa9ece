"""MotionNet: speech -> the mouth's and jaw's landmark motion, trained on real video.

Checked: the net sees no more future audio than its look-ahead; the training targets are
motion from the clip's rest; speech augmentation keeps the timing; `rtavatar prepare` +
`rtavatar train motion` learn a mouth that follows speech on talking clips (here: the bundled
photo whose lips open with a voiced sound, so the test needs no dataset); `rtavatar export
--motion` ships the net, and the shipped-model path (`Avatar.generate`, paste mode warp) then
moves the photo's lips by it; a file and a stream give the same mouth; the warp shows the
offsets it is given (dlib reads them back).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.checkpoints import load_bundle, load_motion, random_bundle, shipped_model
from rtavatar.data.augment import augment_speech, pitch_shift, speed_perturb
from rtavatar.engine.avatar import Avatar
from rtavatar.evaluation.videos import features, track_faces
from rtavatar.media import read_image, write_video
from rtavatar.models.audio import AudioConfig
from rtavatar.models.motion import MOTION_POINTS, MotionConfig, MotionNet, shape_gap
from rtavatar.photo.align import FaceAnalyzer, register
from rtavatar.photo.animator import Pose, target_landmarks
from rtavatar.photo.compose import RenderFrame, make_renderer
from rtavatar.photo.options import PasteOptions
from rtavatar.training.motion import gap_width, rest_offsets

LISA = Path(str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))
P = len(MOTION_POINTS)


def rtavatar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtavatar", *args], capture_output=True, text=True, timeout=600)


def mel_net(seed: int = 0, hidden: int = 32, voice_gate: bool = False) -> MotionNet:
    """A random mel MotionNet; without the speech gate by default, as the tests' voiced buzz is no speech to silero-vad."""
    torch.manual_seed(seed)
    net = MotionNet(MotionConfig(audio=AudioConfig(kind="mel", hidden=hidden), hidden=hidden, layers=2, lookahead=3,
                                 voice_gate=voice_gate))
    torch.nn.init.normal_(net.out.weight, std=0.02)  # the zero-initialised output layer would hide everything
    return net.eval()


def syllables(n: int, rng: np.random.Generator) -> np.ndarray:
    """An inner-lip opening (IOD) per frame: random syllables of 3-8 frames up to 0.25, pauses between."""
    out, i = np.zeros(n), int(rng.integers(5, 12))
    while i < n - 4:
        k = min(int(rng.integers(3, 9)), n - i)
        out[i : i + k] = rng.uniform(0.08, 0.25) * np.sin(np.linspace(0, np.pi, k))
        i += k + int(rng.integers(1, 6))
    return out


def voiced(opening: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A voiced sound whose loudness and brightness follow the opening (an open vowel)."""
    n = len(opening) * SAMPLES_PER_FRAME
    t = np.arange(n) / SAMPLE_RATE
    env = np.interp(t, (np.arange(len(opening)) + 0.5) / FPS, opening / 0.25)
    f0 = rng.uniform(100, 220)
    tone = sum(np.sin(2 * np.pi * f0 * h * t) * np.exp(-h / (1 + 6 * env)) for h in range(1, 12))
    return (0.3 * env * tone / 4 + rng.normal(0, 0.002, n)).astype(np.float32)


def test_motion_net_sees_only_its_lookahead() -> None:
    net = mel_net()
    wav = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 40 * SAMPLES_PER_FRAME).astype(np.float32))[None]
    base = net.predict(wav)[0]
    t = 20
    later = wav.clone()
    later[:, (t + 1) * SAMPLES_PER_FRAME + net.lookahead_samples :] += 0.3
    assert torch.allclose(net.predict(later)[0, : t + 1], base[: t + 1], atol=1e-5)
    assert not torch.allclose(net.predict(later)[0, t + 1 :], base[t + 1 :], atol=1e-4)
    assert base.shape == (40, P, 2)


def test_window_future_widens_the_windows_a_session_takes_and_trains_on() -> None:
    """`MotionConfig.window_future` (the file-mode ablation, configs/motion-grid-future.yaml):
    each encoder window holds that many frames of future audio, in training and in a session,
    and a stream waits for it (its look-ahead); below the conv look-ahead it changes nothing."""
    from rtavatar.engine.motion import ArrayTimeline, MotionTrack
    from rtavatar.training.motion import session_windows

    wav = np.random.default_rng(0).normal(0, 0.1, 60 * SAMPLES_PER_FRAME).astype(np.float32)
    for future, frames in ((0, 3), (2, 3), (12, 12)):
        net = MotionNet(MotionConfig(audio=AudioConfig(kind="mel", hidden=16), hidden=16, layers=2, lookahead=3, window_future=future))
        track = MotionTrack(net)
        assert net.lookahead_samples == frames * SAMPLES_PER_FRAME + net.audio.lookahead_samples  # the mel's own STFT reach too
        assert track.after == frames + 1
        (win,) = session_windows(wav, [20], 8, net)
        assert len(win) == (net.cfg.context + 8 + track.after) * SAMPLES_PER_FRAME
        np.testing.assert_array_equal(win, track.window(ArrayTimeline(wav), 20, 28))


def test_center_window_ignores_a_voice_offset_shared_by_the_window() -> None:
    """`MotionConfig.center_window`: the net reads each window's Whisper features less their
    mean over the window, so a shift common to every frame (a voice's or a channel's colour)
    changes nothing; without it the same shift moves the mouth."""
    rng = np.random.default_rng(0)
    frozen = torch.from_numpy(rng.normal(0, 1, (1, 40, 768)).astype(np.float32))
    shifted = frozen + torch.from_numpy(rng.normal(0, 1, (1, 1, 768)).astype(np.float32))
    for center in (True, False):
        torch.manual_seed(0)
        net = MotionNet(MotionConfig(audio=AudioConfig(kind="whisper-tiny"), hidden=32, layers=2, lookahead=3, center_window=center))
        torch.nn.init.normal_(net.out.weight, std=0.02)
        net.eval()
        same = torch.allclose(net(frozen), net(shifted), atol=1e-5)
        assert same == center


def test_rest_offsets_are_motion_from_the_mouth_at_rest() -> None:
    """Landmarks of the bundled photo opened by known amounts: the offsets' gap is the opening
    (the rest is the silent frames' mouth), whatever the head's position in the picture."""
    pts = register(read_image(LISA), 128).landmarks
    opening = np.r_[np.zeros(5), np.linspace(0.05, 0.25, 10), np.zeros(5)]
    lm = np.stack([target_landmarks(pts, Pose(mouth_open=o)) + 7.0 * k for k, o in enumerate(opening)])
    voice = (opening > 0).astype(int)
    off = rest_offsets(lm, voice, MOTION_POINTS)
    gap, _ = gap_width(off, MOTION_POINTS)
    assert np.abs(gap - opening).max() < 0.01
    assert np.allclose(shape_gap(off), gap)


def test_augmented_speech_keeps_its_timing() -> None:
    rng = np.random.default_rng(0)
    wav = voiced(syllables(50, rng), rng)
    outs = [augment_speech(wav, np.random.default_rng(s)) for s in range(6)]
    assert all(o.shape == wav.shape and o.dtype == np.float32 and np.isfinite(o).all() and np.abs(o).max() <= 1 for o in outs)
    assert not np.allclose(outs[0], wav) and not np.allclose(outs[0], outs[1])
    assert np.array_equal(outs[2], augment_speech(wav, np.random.default_rng(2)))  # seeded
    # Loud frames stay loud: the envelope survives rooms, lines and noise.
    env = lambda x: np.sqrt((x.reshape(-1, SAMPLES_PER_FRAME) ** 2).mean(1))  # noqa: E731
    assert all(np.corrcoef(env(o), env(wav))[0, 1] > 0.5 for o in outs)


def test_width_weight_weighs_width_errors_only() -> None:
    """`width_weight` scales the loss of a prediction whose mouth is too wide (corners out), and
    leaves the loss of one whose lips are too far apart (the gap) as it was."""
    from rtavatar.training.motion import motion_loss

    pos = {p: k for k, p in enumerate(MOTION_POINTS)}
    target, valid = torch.zeros(1, 4, P, 2), torch.ones(1, 4, dtype=torch.bool)
    wide, apart = target.clone(), target.clone()
    wide[..., pos[48], 0], wide[..., pos[54], 0] = -0.02, 0.02
    for p in (65, 66, 67):
        apart[..., pos[p], 1] = 0.04
    loss = lambda pred, w: float(motion_loss(pred, target, valid, MOTION_POINTS, 1.0, w)[0])  # noqa: E731
    assert loss(wide, 6.0) > 2 * loss(wide, 1.0)
    assert loss(apart, 6.0) == pytest.approx(loss(apart, 1.0))


def test_speed_perturbation_moves_sound_and_mouth_together() -> None:
    n, sr = 50, SAMPLE_RATE
    t = np.arange(n * SAMPLES_PER_FRAME) / sr
    on = (t >= 0.8) & (t < 1.2)  # a 200 Hz burst over frames 20-29, the mouth open just then
    wav = (0.5 * np.sin(2 * np.pi * 200 * t) * on).astype(np.float32)
    track = np.zeros((n, 2, 2), np.float32)
    track[20:30, :, 1] = 0.1
    track[5] = np.nan
    x, y = speed_perturb(wav, track, 1.25)
    assert x.shape == (40 * SAMPLES_PER_FRAME,) and y.shape == (40, 2, 2) and x.dtype == np.float32
    env = np.sqrt((x.reshape(40, -1) ** 2).mean(1))
    assert np.array_equal(env > 0.1, y[:, 0, 1] > 0.05)  # the burst and the open mouth both at frames 16-23
    assert (env > 0.1).sum() == 8 and np.isnan(y[4]).all() and np.isfinite(y[6:]).all()
    spec = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()] == pytest.approx(250, abs=3)  # pitch (and formants) x 1.25
    with pytest.raises(ValueError):
        speed_perturb(wav, track, 3.0)


def test_pitch_shift_moves_the_voice_and_keeps_its_timing() -> None:
    n, sr = 50, SAMPLE_RATE
    t = np.arange(n * SAMPLES_PER_FRAME) / sr
    on = (t >= 0.8) & (t < 1.2)  # a 200 Hz burst over frames 20-29
    wav = (0.5 * np.sin(2 * np.pi * 200 * t) * on).astype(np.float32)
    for semitones in (4.0, -3.0):
        x = pitch_shift(wav, semitones)
        assert x.shape == wav.shape and x.dtype == np.float32
        env = np.sqrt((x.reshape(n, -1) ** 2).mean(1))
        loud = np.flatnonzero(env > 0.5 * env.max())
        assert loud.min() >= 19 and loud.max() <= 30 and len(loud) >= 8  # the same frames: the mouth's track still fits
        spec = np.abs(np.fft.rfft(x))
        assert np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()] == pytest.approx(200 * 2 ** (semitones / 12), abs=3)
    assert np.array_equal(pitch_shift(wav, 0), wav)
    with pytest.raises(ValueError):
        pitch_shift(wav, 13)


def test_change_voice_moves_pitch_and_formants_apart_and_keeps_timing() -> None:
    """A vowel-like burst (120 Hz, its harmonics shaped by formants at 700 and 1,200 Hz) as
    another voice: the pitch moves to the median asked for or stays (0), the spectrum's
    centroid rises with the formant ratio and falls below 1, and the burst keeps its frames."""
    from rtavatar.data.augment import change_voice

    n, sr = 50, SAMPLE_RATE
    t = np.arange(n * SAMPLES_PER_FRAME) / sr
    on = (t >= 0.6) & (t < 1.4)  # frames 15-34
    f0 = 120.0
    amp = {h: np.exp(-((h * f0 - 700) / 150) ** 2) + 0.6 * np.exp(-((h * f0 - 1200) / 200) ** 2) for h in range(1, 40)}  # the formants
    wav = (0.4 * on * sum(a * np.sin(2 * np.pi * h * f0 * t) for h, a in amp.items()) / sum(amp.values())).astype(np.float32)

    def pitch(x: np.ndarray) -> float:
        seg = x[int(0.8 * sr) : int(1.2 * sr)].astype(np.float64)
        ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
        lo, hi = sr // 400, sr // 60
        return sr / (lo + int(np.argmax(ac[lo:hi])))

    def centroid(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x[int(0.8 * sr) : int(1.2 * sr)])) ** 2
        f = np.fft.rfftfreq(int(0.4 * sr), 1 / sr)
        return float((spec * f).sum() / spec.sum())

    assert pitch(wav) == pytest.approx(f0, rel=0.03)
    for formant, median in ((1.15, 210.0), (0.9, 0.0)):
        x = change_voice(wav, formant, median)
        assert x.shape == wav.shape and x.dtype == np.float32
        env = np.sqrt((x.reshape(n, -1) ** 2).mean(1))
        loud = np.flatnonzero(env > 0.5 * env.max())
        assert loud.min() >= 14 and loud.max() <= 35 and len(loud) >= 16
        assert pitch(x) == pytest.approx(median or f0, rel=0.06)
        assert (centroid(x) > 1.08 * centroid(wav)) if formant > 1 else (centroid(x) < 0.95 * centroid(wav))
    assert np.array_equal(change_voice(wav[:500], 1.1), wav[:500])
    with pytest.raises(ValueError):
        change_voice(wav, 3.0)


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 3 s clips of the bundled photo whose lips open with a voiced sound (the warp's own
    renders), in a folder `rtavatar prepare` reads."""
    from test_videos import talking_frames

    root = tmp_path_factory.mktemp("talking")
    rng = np.random.default_rng(3)
    for k in range(6):
        opening = syllables(75, rng)
        write_video(root / f"clip{k}.mp4", talking_frames(75, np.round(opening, 2))[0], voiced(opening, rng))
    return root


def test_train_motion_learns_a_mouth_and_ships_with_a_model(talking: Path, tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    out = rtavatar("prepare", "--videos", str(talking), "--out", str(data), "--resolution", "96", "--workers", "1", "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = {"motion": {"audio": {"kind": "mel"}, "hidden": 48, "layers": 2, "lookahead": 3, "voice_gate": False},
           "train": {"steps": 300, "batch_size": 16, "lr": 0.003, "warmup": 20, "ckpt_every": 150, "ema": 0.9},
           "val_pattern": "clip5", "val_fraction": 0.0, "augment": 1, "windows_per_clip": 8, "speeds": [1.2],
           "pitches": [3]}
    (tmp_path / "motion.json").write_text(json.dumps(cfg))
    out = rtavatar("train", "motion", "--config", str(tmp_path / "motion.json"), "--data", str(data), "--out", str(run), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["train_clips"] == 15 and res["val_clips"] == 1  # 5 clips, their speed-perturbed and pitch-shifted copies; the held-out one alone
    assert res["val_gap_r"] > 0.7, res  # the held-out clip's mouth, predicted from its sound
    val = [json.loads(x) for x in (run / "val.jsonl").read_text().splitlines()]
    assert [v["step"] for v in val] == [150, 300] and 0.3 < val[-1]["val_gap_std_ratio"] < 3

    # Shipped with a model: export attaches it with the run's gain, and the warp follows it.
    shipped = shipped_model()
    assert shipped is not None
    model = tmp_path / "model"
    out = rtavatar("export", "--checkpoint", str(shipped), "--out", str(model), "--motion", str(run), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    bundle = load_bundle(model)
    assert bundle.motion is not None and bundle.motion.cfg.gain == pytest.approx(1 / val[-1]["val_gap_std_ratio"], rel=1e-3)
    assert bundle.motion.cfg.width_gain == pytest.approx(1 / val[-1]["val_width_std_ratio"], rel=1e-3)
    assert load_motion(model).cfg.hidden == 48 and not bundle.motion.cfg.voice_gate
    gated = tmp_path / "gated"
    out = rtavatar("export", "--checkpoint", shipped.name, "--out", str(gated), "--motion", str(run), "--voice-gate",  # by name
                   "--motion-width-gain", "1.5", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert load_motion(gated).cfg.voice_gate and load_motion(gated).cfg.width_gain == 1.5  # they travel with the checkpoint
    rng = np.random.default_rng(9)
    opening = syllables(50, rng)
    frames = Avatar(bundle).generate(LISA, voiced(opening, rng), paste=PasteOptions(head_motion=0, blinks=0))
    gap = features(track_faces(frames, FaceAnalyzer()).points)["gap"]
    assert np.corrcoef(np.nan_to_num(gap), opening)[0, 1] > 0.6  # dlib sees the photo's lips follow the sound


def motion_avatar() -> Avatar:
    """Random tiny weights with a random (mel) MotionNet."""
    from test_engine import small_net

    bundle = random_bundle(small_net(), vae_channels=8, seed=1, max_new=6)
    bundle.motion = mel_net(seed=2)
    return Avatar(bundle)


def test_a_file_and_a_stream_give_the_same_mouth() -> None:
    """The session's mouth track does not depend on how the audio was cut into pushes, and the
    offline path reads it from the same windows: with the warp (the picture is the photo moved
    by the offsets alone) a file's frames equal a stream's, but for the first chunk, which a
    session makes before its look-ahead has arrived."""
    avatar = motion_avatar()
    rng = np.random.default_rng(4)
    audio = voiced(syllables(40, rng), rng)
    paste = PasteOptions(head_motion=0, blinks=0)

    def stream(cuts: np.ndarray) -> np.ndarray:
        with avatar.session(LISA, paste=paste) as s:
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(audio)]):
                s.push_audio(audio[a:b])
            s.close()
            return np.stack([f.image for f in s.frames()])

    whole, cut = stream(np.array([], int)), stream(np.sort(rng.integers(0, len(audio), 6)))
    assert whole.shape[0] == 40 and np.array_equal(whole, cut)
    offline = avatar.generate(LISA, audio, paste=paste)
    assert offline.shape == whole.shape
    assert np.abs(offline[10:].astype(int) - whole[10:].astype(int)).max() <= 2
    # ... and the mouth did move: frames differ from the photo around the lips.
    assert np.abs(offline.astype(int) - offline[0].astype(int)).max() > 30


def test_the_warp_shows_the_offsets_it_is_given() -> None:
    """Offsets that open the lips by 0.15 IOD, and narrow the mouth while opening (an 'o'),
    read back by dlib on the rendered photo within tolerance, at the photo's resolution."""
    portrait = register(read_image(LISA), 128)
    render = make_renderer(portrait, PasteOptions(mode="warp", head_motion=0, blinks=0), portrait.face, motion=True)
    assert render.uses_motion and not render.needs_face
    pos = {p: k for k, p in enumerate(MOTION_POINTS)}
    opened = np.zeros((P, 2))
    for p in (65, 66, 67, 56, 57, 58):  # the lower lip drops 0.15
        opened[pos[p], 1] = 0.15
    for p in (7, 8, 9):
        opened[pos[p], 1] = 0.1  # the jaw with it
    rounded = opened.copy()
    for p, side in ((48, 1), (60, 1), (54, -1), (64, -1)):
        rounded[pos[p], 0] = 0.08 * side  # corners in
    fa = FaceAnalyzer()
    read = {}
    for name, off in (("rest", np.zeros((P, 2))), ("open", opened), ("round", rounded)):
        img = render.render([RenderFrame(0, "speak", {"smile": 0.1, "brow_raise": 0.0, "eye_open_l": 1.0, "eye_open_r": 1.0,
                                                      "yaw": 0.0, "pitch": 0.0, "roll": 0.0}, motion=off)])[0]
        pts = track_faces([img], fa).points
        read[name] = {k: float(v[0]) for k, v in features(pts).items()}
    assert read["open"]["gap"] - read["rest"]["gap"] == pytest.approx(0.15, abs=0.04)
    # 0.16 IOD narrower by construction; dlib reads about half of it on this 300 px photo (docs/RESULTS.md)
    assert read["round"]["width"] < read["open"]["width"] - 0.05


def test_the_warp_rounds_and_spreads_a_photos_parted_lips() -> None:
    """A photo whose lips are parted at rest (moved by PartedLips, which knows only an opening)
    still takes the offsets' sideways part: dlib reads the mouth narrower for corners drawn in
    and wider for corners drawn out, at the photo's resolution (600x800, lips parted 0.12 IOD)."""
    from PIL import Image

    big = np.asarray(Image.open(LISA).convert("RGB").resize((600, 800), Image.BICUBIC))
    base = register(big, 128)
    opener = make_renderer(base, PasteOptions(mode="warp", head_motion=0, blinks=0), base.face, motion=True)
    pos = {p: k for k, p in enumerate(MOTION_POINTS)}
    parted = np.zeros((P, 2))
    for p in (65, 66, 67):
        parted[pos[p], 1] = 0.12
    controls = {"smile": 0.1, "brow_raise": 0.0, "eye_open_l": 1.0, "eye_open_r": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    photo = opener.render([RenderFrame(0, "speak", controls, motion=parted)])[0]
    portrait = register(photo, 128)
    render = make_renderer(portrait, PasteOptions(mode="warp", head_motion=0, blinks=0, close_lips=False), portrait.face,
                           motion=True)
    assert render.mouth.parted is not None  # type: ignore[attr-defined]
    fa = FaceAnalyzer()
    width = {}
    for name, side in (("rest", 0.0), ("round", 1.0), ("spread", -1.0)):
        off = np.zeros((P, 2))
        for p, s in ((48, 1), (49, 0.6), (59, 0.6), (60, 1), (54, -1), (53, -0.6), (55, -0.6), (64, -1)):
            off[pos[p], 0] = 0.07 * s * side  # corners in (round) or out (spread)
        img = render.render([RenderFrame(0, "speak", controls, motion=off)])[0]
        width[name] = float(features(track_faces([img], fa).points)["width"][0])
    assert width["round"] < width["rest"] - 0.04 and width["spread"] > width["rest"] + 0.04, width


def test_listening_frames_keep_the_mouth_at_rest() -> None:
    """With the state forced to listen, the MotionNet's mouth rests (listening frames hear
    silence, as the DiT's do): the photo's mouth is its own in every frame; in speech it moves."""
    avatar = motion_avatar()
    rng = np.random.default_rng(5)
    audio = voiced(syllables(30, rng), rng)
    paste = PasteOptions(head_motion=0, blinks=0)
    photo = read_image(LISA)
    listen = avatar.generate(LISA, audio, paste=paste, state="listen")
    speak = avatar.generate(LISA, audio, paste=paste, state="speak")
    assert all(np.array_equal(f, photo) for f in listen)
    assert max(np.abs(f.astype(int) - photo).max() for f in speak) > 30


def test_voice_gate_opens_before_speech_and_shuts_after_it() -> None:
    from rtavatar.engine.motion import voice_gate
    from rtavatar.engine.vad import WINDOW

    frames = np.zeros(20)
    frames[5:10] = 0.9  # speech over frames 5-9 (each 512-sample window takes the value of the frame it starts in)
    probs = frames[(np.arange(20 * SAMPLES_PER_FRAME // WINDOW) * WINDOW) // SAMPLES_PER_FRAME]
    g = voice_gate(probs, 20, lead=3, hangover=1)
    assert g.shape == (20,) and g.dtype == np.float32
    # Speech in frames 5-10 (the window starting at the end of frame 9 reaches into 10); the gate rises over the
    # 3 frames before it (lips part before the voice), holds one frame after it, then ramps shut and rests.
    assert np.all(g[6:11] == 1) and np.all(np.diff(g[:7]) > 0) and g[0] == 0
    assert g[11] == 0.75 and g[12] == 0.25 and np.all(g[13:] == 0)
    assert np.array_equal(voice_gate(np.zeros_like(probs), 20), np.zeros(20, np.float32))  # silence: at rest throughout


def test_a_pause_in_real_speech_rests() -> None:
    """Real speech, 0.8 s of room tone, real speech: with the speech gate the MotionNet's
    offsets are exactly zero inside the pause (the eval's pause, edges aside), and in speech
    they are the net's own."""
    from rtavatar.engine.motion import ArrayTimeline, MotionTrack
    from rtavatar.media import read_audio

    hello = read_audio(files("rtavatar.assets") / "speech" / "hello.wav")
    rng = np.random.default_rng(6)
    room = rng.normal(0, 0.003, int(0.8 * SAMPLE_RATE)).astype(np.float32)
    wav = np.concatenate([hello, room, hello])
    wav = wav[: len(wav) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
    n = len(wav) // SAMPLES_PER_FRAME
    gated, free = (MotionTrack(mel_net(seed=3, voice_gate=g)).clip_offsets(ArrayTimeline(wav), n, 8) for g in (True, False))
    a, b = len(hello) // SAMPLES_PER_FRAME, (len(hello) + len(room)) // SAMPLES_PER_FRAME
    assert np.abs(free[a + 3 : b - 3]).max() > 1e-3  # the net alone moves the mouth on room tone ...
    assert np.all(gated[a + 3 : b - 3] == 0)  # ... the gate rests it
    amp = lambda x: np.abs(x).mean((1, 2))  # noqa: E731
    same = np.isclose(amp(gated), amp(free), rtol=1e-5)
    assert same[: a - 2].mean() > 0.6 and same[b + 2 :].mean() > 0.6  # in speech the net's own offsets


def test_width_gain_scales_the_lips_sideways_only() -> None:
    from rtavatar.engine.motion import ArrayTimeline, MotionTrack
    from rtavatar.models.motion import LIP_POINTS

    rng = np.random.default_rng(7)
    wav = voiced(syllables(30, rng), rng)
    base = MotionTrack(mel_net(seed=4)).clip_offsets(ArrayTimeline(wav), 30, 8)
    net = mel_net(seed=4)
    net.cfg.width_gain = 1.5
    wide = MotionTrack(net).clip_offsets(ArrayTimeline(wav), 30, 8)
    lips = np.isin(np.array(MOTION_POINTS), LIP_POINTS)
    assert np.abs(base[:, lips, 0]).max() > 1e-4
    assert np.allclose(wide[:, lips, 0], 1.5 * base[:, lips, 0], atol=1e-6)
    assert np.array_equal(wide[:, ~lips], base[:, ~lips]) and np.array_equal(wide[..., 1], base[..., 1])  # the jaw, and every y


def test_warp_with_a_motionnet_skips_the_denoiser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paste mode warp reads only the MotionNet's offsets, so neither a file nor a stream runs
    the denoiser; paste mode photo, which shows the model's mouth, still does."""
    from rtavatar.engine.core import ChunkSampler

    calls = []
    real = ChunkSampler.sample
    monkeypatch.setattr(ChunkSampler, "sample", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    avatar = motion_avatar()
    rng = np.random.default_rng(8)
    audio = voiced(syllables(30, rng), rng)
    warp = PasteOptions(head_motion=0, blinks=0)
    frames = avatar.generate(LISA, audio, paste=warp)
    with avatar.session(LISA, paste=warp) as s:
        s.push_audio(audio)
        s.close()
        streamed = np.stack([f.image for f in s.frames()])
    assert frames.shape[0] == streamed.shape[0] == 30 and not calls
    assert np.abs(frames.astype(int) - frames[0].astype(int)).max() > 30  # the mouth moved all the same
    avatar.generate(LISA, audio, paste=PasteOptions(mode="photo", head_motion=0, blinks=0))
    assert calls
