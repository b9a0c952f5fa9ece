"""`rtavatar eval --speech`: does the mouth open in speech and rest in pauses, on real voices?

The scoring is checked on arrays (which pauses count, their edges left out, what the ratio
rests on), then the whole command runs on a folder with the bundled recording, a silent one
and a file that is not audio, with the shipped model. The shipped model's numbers are not
asserted: they are what the command measures (docs/RESULTS.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtavatar import SAMPLE_RATE
from rtavatar.evaluation.speech import COLUMNS, EDGE, score_speech

HELLO = Path(str(files("rtavatar") / "assets" / "speech" / "hello.wav"))


def test_score_speech_counts_long_pauses_at_rest_without_their_edges() -> None:
    """Speech and non-speech runs: 10 silent frames (a pause), 30 speech, 12 silent (a pause
    whose mouth stays open), 20 speech, 3 silent (a gap between words, too short to be a
    pause), 10 speech. Each pause's EDGE frames at both ends are open (lips closing into it)
    and do not count against its rest."""
    runs = [(False, 10), (True, 30), (False, 12), (True, 20), (False, 3), (True, 10)]
    speech = np.concatenate([np.full(n, s) for s, n in runs])
    rest = 0.02
    gap = np.where(speech, 0.12, rest)
    first, second = (0, 10), (40, 52)
    for a, b in (first, second):
        gap[a : a + EDGE] = gap[b - EDGE : b] = 0.12
    gap[second[0] + EDGE : second[1] - EDGE] = rest + 0.08
    gap[60] = np.nan  # no face on one speech frame: not counted anywhere
    s = score_speech(gap, speech, rest)
    assert s["pauses"] == 2 and s["pauses_at_rest"] == 1
    assert s["worst_pause"] == pytest.approx(0.08)
    assert s["silent_frames"] == 25 and s["speech_fraction"] == pytest.approx(60 / 85)
    assert s["speech_gap"] == pytest.approx(0.10)
    silent = gap[~speech]
    assert s["ratio"] == pytest.approx(0.12 / silent.mean())
    assert s["pause_gap"] == pytest.approx(silent.mean() - rest)


def rtavatar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtavatar", *args], capture_output=True, text=True, timeout=600)


def test_eval_speech_end_to_end(tmp_path: Path) -> None:
    """The shipped model and the bundled photo with each recording: the real one gets every
    column, in the table too; the silent one and the file that is not audio get a row that says
    why, and the run goes on."""
    root = tmp_path / "speech"
    root.mkdir()
    shutil.copy(HELLO, root / "hello.wav")
    sf.write(root / "quiet.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (root / "notes.mp3").write_text("not audio")
    out = rtavatar("eval", "--speech", str(root), "--out", str(tmp_path / "x.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    result = json.loads((tmp_path / "x.json").read_text())
    rows = {r["file"]: r for r in result["rows"]}
    assert set(rows) == {"hello.wav", "quiet.wav", "notes.mp3"}
    assert "silent" in rows["quiet.wav"]["error"] and "error" in rows["notes.mp3"]
    hello = rows["hello.wav"]
    assert set(COLUMNS) <= set(hello) and 0 < hello["speech_fraction"] < 1
    assert hello["silent_frames"] > 0 and hello["speech_gap"] > hello["pause_gap"]
    assert result["model"] == "shipped" and result["paste"]["mode"] == "warp" and result["rest_gap"] > 0
    assert f"({hello['silent_frames']})" in out.stdout and "| quiet.wav | error:" in out.stdout
