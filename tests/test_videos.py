"""`rtavatar eval --videos`: self-reenactment on real talking clips, scored with dlib.

The measures are checked on their own (landmark arrays: a copy scores perfectly, a shifted
copy gives the shift as the lag, a halved opening half the amplitude, blinks are counted),
then on a short synthetic "real" clip (the bundled photo whose lips the landmark warp opens
and closes for 2 s, with a voiced sound that follows the opening) scored against itself, and
the whole command runs on that clip with the shipped model. The shipped model's numbers are
not asserted: they are what the command measures (docs/RESULTS.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.evaluation.videos import (COLUMNS, compare, count_blinks, eye_aspect_ratio, features, lagged_r, list_videos,
                                        pick_portrait, read_clip, score_clip, track_faces)
from rtavatar.media import read_image, write_video
from rtavatar.photo.align import register
from rtavatar.photo.animator import Pose, target_landmarks
from rtavatar.photo.compose import PhotoCompositor, make_renderer
from rtavatar.photo.options import PasteOptions

LISA = Path(str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))
SECONDS = 2.0


def openings(n: int) -> np.ndarray:
    """Three syllables in 2 s: the inner-lip gap (IOD) 0 at rest, up to 0.3."""
    t = np.arange(n) / FPS
    return 0.3 * np.clip(np.sin(2 * np.pi * 1.5 * t), 0, None)


def voiced(envelope: np.ndarray) -> np.ndarray:
    """A voiced sound (130 Hz and harmonics) whose loudness follows a per-frame envelope."""
    n = len(envelope) * SAMPLES_PER_FRAME
    t = np.arange(n) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * 130 * h * t) / h for h in range(1, 8))
    env = np.interp(t, (np.arange(len(envelope)) + 0.5) / FPS, envelope / max(envelope.max(), 1e-6))
    noise = np.random.default_rng(0).normal(0, 0.002, n)
    return (0.25 * env * tone / np.abs(tone).max() + noise).astype(np.float32)


def talking_frames(n: int, opening: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bundled photo with its own lips moved to `opening` (default `openings(n)`), inner-lip
    gaps in IOD per frame, by paste mode warp's animator."""
    base = register(read_image(LISA), 128)
    paste = make_renderer(base, PasteOptions(mode="warp", head_motion=0, blinks=0), base.face)
    assert isinstance(paste, PhotoCompositor)
    mouth, renders, frames = paste.mouth, {}, []
    for o in openings(n) if opening is None else opening:
        key = round(float(o), 3)
        if key not in renders:
            photo = base.image.copy()
            mouth.clip.paste(photo, mouth.animator.render(Pose(mouth_open=key)))
            renders[key] = photo
        frames.append(renders[key])
    return np.stack(frames), base.landmarks


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """talk.mp4 (the 2 s talking photo with its voice), noface.mp4 (a blue sky with the voice),
    mute.mp4 (the talking photo without an audio track) and a text file."""
    root = tmp_path_factory.mktemp("videos")
    n = int(SECONDS * FPS)
    frames, _ = talking_frames(n)
    audio = voiced(openings(n))
    write_video(root / "talk.mp4", frames, audio)
    write_video(root / "noface.mp4", np.full((n, 240, 320, 3), (120, 170, 230), np.uint8), audio)
    write_video(root / "mute.mp4", frames)
    (root / "notes.txt").write_text("not a video")
    return root


# --------------------------------------------------------------------------- the measures on arrays


def landmark_series(n: int = 60, scale: float = 1.0, yaw: float = 0.0) -> np.ndarray:
    """(n, 68, 2) landmarks of the bundled photo with the mouth at `scale` x openings(n) and the
    head turning by `yaw` degrees amplitude."""
    pts = register(read_image(LISA), 128).landmarks
    t = np.arange(n) / FPS
    return np.stack([target_landmarks(pts, Pose(mouth_open=scale * o, yaw=yaw * np.sin(2 * np.pi * 0.7 * ti)))
                     for o, ti in zip(openings(n), t)])


def test_lagged_r_reports_the_shift() -> None:
    x = np.convolve(np.random.default_rng(1).normal(size=200), np.ones(4) / 4, mode="same")
    for shift in (-2, -1, 0, 1, 2):
        late = np.roll(x, shift)  # late[t] = x[t - shift]: shift > 0 is a late copy
        r, lag = lagged_r(late, x)
        assert lag == shift and r > 0.99
    nan = x.copy()
    nan[::7] = np.nan  # missing frames are left out, not zeros
    assert lagged_r(nan, x) == (pytest.approx(1.0), 0)
    assert np.isnan(lagged_r(np.zeros(50), x[:50])[0])  # a still mouth has no correlation


def test_compare_a_copy_scores_perfectly_and_changes_show() -> None:
    real = landmark_series(yaw=6.0)
    energy = np.abs(np.sin(np.arange(len(real)) / 5))
    same = compare(real, real, energy)
    assert same["gap_r"] == pytest.approx(1.0) and same["gap_lag"] == 0 and same["gap_r0"] == pytest.approx(1.0)
    assert same["gap_std_ratio"] == pytest.approx(1.0) and same["gap_speech_ratio"] == pytest.approx(1.0)
    assert same["width_r"] == pytest.approx(1.0) and same["mouth_dist"] == pytest.approx(0.0, abs=1e-9)
    assert same["head_ratio"] == pytest.approx(1.0) and same["head_real"] > 0.01 and same["faces"] == 1.0
    assert same["loud_r_real"] == same["loud_r_gen"]
    assert set(COLUMNS) - {"identity", "mouth_dist_still"} <= set(same)
    assert compare(real, real, energy, portrait=0)["mouth_dist_still"] > 1.0  # the mouth moves; a still one is off

    half = compare(real, landmark_series(scale=0.5, yaw=6.0), energy)
    assert half["gap_std_ratio"] == pytest.approx(0.5, abs=0.02) and half["gap_r"] > 0.99 and half["mouth_dist"] > 0.5
    assert compare(real, landmark_series(yaw=12.0), energy)["head_ratio"] == pytest.approx(2.0, rel=0.1)
    assert compare(real, landmark_series(yaw=0.0), energy)["head_ratio"] < 0.05
    late = compare(real, np.roll(real, 1, axis=0), energy)
    assert late["gap_lag"] == 1 and late["gap_r"] > 0.99 > late["gap_r0"]
    gone = real.copy()
    gone[10:20] = np.nan  # frames with no face are left out of every measure
    part = compare(gone, real, energy)
    assert part["faces"] == pytest.approx(50 / 60) and part["gap_r"] == pytest.approx(1.0) and part["mouth_dist"] == 0.0


def test_blinks_are_runs_of_closed_eyes() -> None:
    ear = np.full(250, 0.3)  # 10 s
    ear[20:23] = 0.1  # a blink
    ear[100:101] = 0.12  # a one-frame blink
    ear[150:170] = 0.1  # 20 frames: eyes shut, not a blink
    ear[200:205] = 0.25  # not below 0.6 x the median
    ear[230:232] = np.nan  # no face
    assert count_blinks(ear) == 2
    ear[20:30] = [0.1, 0.2, 0.17, 0.1, 0.2, 0.3, 0.1, 0.15, 0.16, 0.3]  # jitter about the threshold: one blink, then another
    assert count_blinks(ear) == 3
    ear[100:112] = [0.12, 0.17, 0.12, 0.17, 0.12, 0.17, 0.17, 0.12, 0.17, 0.12, 0.12, 0.17]  # a long look down: none
    assert count_blinks(ear) == 2
    assert count_blinks(np.full(10, np.nan)) == 0
    pts = landmark_series(5)
    assert eye_aspect_ratio(pts).shape == (5,) and 0.1 < eye_aspect_ratio(pts)[0] < 0.6


# --------------------------------------------------------------------------- a clip against itself


def test_a_clip_scored_against_itself(clips: Path) -> None:
    """dlib reads the synthetic clip's programmed opening, the portrait is a shut-mouth frame,
    and the clip against itself gives r 1 at lag 0, ratio 1, distance 0, the same person."""
    from rtavatar.evaluation.photos import FaceReader

    real, audio = read_clip(clips / "talk.mp4")
    n = int(SECONDS * FPS)
    assert real.shape == (n, 400, 300, 3) and len(audio) == n * SAMPLES_PER_FRAME
    reader = FaceReader()
    track = track_faces(real, reader.fa)
    assert track.detected.all()
    gap = compare(track.points, track.points)  # gap via the same code path
    assert gap["gap_r"] == pytest.approx(1.0)
    seen = features(track.points)["gap"]
    assert np.corrcoef(seen, openings(n))[0, 1] > 0.9  # dlib reads the opening the warp made
    k = pick_portrait(track)
    assert k < FPS and openings(n)[k] == 0.0
    row = score_clip(real, real, audio, k, reader.fa, reader.rec, track)
    assert row["gap_r"] == pytest.approx(1.0) and row["gap_lag"] == 0
    assert row["gap_std_ratio"] == pytest.approx(1.0) and row["gap_speech_ratio"] == pytest.approx(1.0)
    assert row["mouth_dist"] == pytest.approx(0.0, abs=1e-6) and row["identity"] < 0.1
    assert row["loud_r_real"] > 0.6  # this clip's loudness is its opening (a real person's is not)


def test_list_videos(clips: Path, tmp_path: Path) -> None:
    assert [p.name for p in list_videos(clips)] == ["mute.mp4", "noface.mp4", "talk.mp4"]
    assert list_videos(clips / "notes.txt") == [clips / "notes.txt"]  # a file is taken as it is
    from rtavatar.errors import RTAvatarError

    with pytest.raises(RTAvatarError, match="no video files"):
        list_videos(tmp_path)


# --------------------------------------------------------------------------- the command


def rtavatar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtavatar", *args], capture_output=True, text=True, timeout=600)


def test_eval_videos_end_to_end(clips: Path, tmp_path: Path) -> None:
    """The shipped model on the folder: the talking clip gets every column, the clip with no
    face and the one with no audio get a row that says why, the text file is not a video."""
    out = rtavatar("eval", "--videos", str(clips), "--out", str(tmp_path / "x.json"), "--strip", str(tmp_path / "strips"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    result = json.loads((tmp_path / "x.json").read_text())
    rows = {r["clip"]: r for r in result["rows"]}
    assert set(rows) == {"talk.mp4", "noface.mp4", "mute.mp4"}
    assert "no face" in rows["noface.mp4"]["error"] and "no audio" in rows["mute.mp4"]["error"]
    talk = rows["talk.mp4"]
    assert set(COLUMNS) <= set(talk) and talk["frames"] == int(SECONDS * FPS) and talk["faces"] >= 0.9
    assert -1 <= talk["gap_r"] <= 1 and abs(talk["gap_lag"]) <= 2 and talk["identity"] < 0.6
    assert result["scored"] == 1 and result["median"]["gap_r"] == talk["gap_r"]
    assert result["paste"]["mode"] == "warp" and result["model"] == "shipped"
    strip = Image.open(tmp_path / "strips" / "talk.png")
    assert strip.size == (8 * 112, 14 + 2 * 112)
    assert "| talk.mp4 |" in out.stdout and "median of 1" in out.stdout and "| mute.mp4 | error:" in out.stdout


def test_eval_videos_takes_at_most_clips(clips: Path, tmp_path: Path) -> None:
    out = rtavatar("eval", "--videos", str(clips), "--clips", "1", "--out", str(tmp_path / "x.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert [r["clip"] for r in json.loads((tmp_path / "x.json").read_text())["rows"]] == ["mute.mp4"]  # the first, by name


def test_eval_videos_takes_a_seed_and_other_evals_refuse_it(clips: Path, tmp_path: Path) -> None:
    """`--seed` reaches the renderer of eval --videos (its rows say which seed drew the blinks
    and sway); an eval that has no renderer seed refuses it in one line."""
    out = rtavatar("eval", "--videos", str(clips), "--clips", "1", "--seed", "3", "--out", str(tmp_path / "x.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "x.json").read_text())["seed"] == 3
    bad = rtavatar("eval", "--photos", str(clips), "--audio", "x.wav", "--seed", "3")
    lines = [x for x in bad.stderr.splitlines() if "ERROR" in x]
    assert bad.returncode == 2 and len(lines) == 1 and "--seed" in lines[0], bad.stderr


def test_eval_videos_averages_seeds(clips: Path, tmp_path: Path) -> None:
    """`--seeds 2`: the clip is rendered with seeds 0 and 1 (different sway, so dlib reads a
    different head), its row is each measure's mean over the two, and the per-seed medians
    come with it; `--seeds` on another eval, or under 1, is one line."""
    out = rtavatar("eval", "--videos", str(clips / "talk.mp4"), "--seeds", "2", "--out", str(tmp_path / "x.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "x.json").read_text())
    (row,) = result["rows"]
    runs = row["per_seed"]
    assert result["seeds"] == 2 and len(runs) == 2 and len(result["median_per_seed"]) == 2
    assert runs[0]["head_gen"] != runs[1]["head_gen"]
    for k in ("gap_r", "width_r", "mouth_dist", "head_ratio", "blinks_gen"):
        assert row[k] == pytest.approx((runs[0][k] + runs[1][k]) / 2)
        assert result["median_per_seed"][1][k] == pytest.approx(runs[1][k])
    for bad in (("--photos", str(clips), "--audio", "x.wav", "--seeds", "2"), ("--videos", str(clips), "--seeds", "0")):
        res = rtavatar("eval", *bad)
        lines = [x for x in res.stderr.splitlines() if "ERROR" in x]
        assert res.returncode == 2 and len(lines) == 1 and "seeds" in lines[0], res.stderr


def test_eval_videos_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        out = rtavatar("eval", "--videos", str(target))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        lines = [x for x in out.stderr.splitlines() if "ERROR" in x]
        assert len(lines) == 1 and "--videos" in lines[0], out.stderr
