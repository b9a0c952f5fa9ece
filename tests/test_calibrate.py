"""`rtavatar calibrate-warp` (commands/calibrate.py): the warp reader's gain, from photo clips,
stored in a checkpoint; and its mistakes are one line."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from rtavatar.checkpoints import INFERENCE_FILE, pretrained_path
from rtavatar.cli import main

LISA = Path(str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))


@pytest.fixture(scope="module")
def photo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rtavatar.data.synth import SynthConfig, synthesize_dataset

    tmp = tmp_path_factory.mktemp("calibrate")
    (tmp / "faces" / "set").mkdir(parents=True)
    shutil.copy(LISA, tmp / "faces" / "set" / "101_a.jpg")
    cfg = SynthConfig(clips=1, seed=3, seconds=(1.6, 1.6), portraits=str(tmp / "faces"), photo_fraction=1.0,
                      test_fraction=0.0, workers=1)
    synthesize_dataset(cfg, tmp / "data", progress=False)
    return tmp / "data"


def test_calibrate_warp_writes_the_gain_into_the_checkpoint(photo_clip: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "model"
    shutil.copytree(pretrained_path(), model)
    before = json.loads((model / INFERENCE_FILE).read_text())
    out = tmp_path / "gain.json"
    assert main(["calibrate-warp", "--data", str(photo_clip), "--checkpoint", str(model), "--clips", "3",
                 "--out", str(out), "--write"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    res = json.loads(out.read_text())
    assert len(res["clips"]) == 1 and res["model"] == str(model) and res["reader"] == "expert"  # the model's own head
    assert math.isfinite(res["gain"]) and res["gain"] > 0 and printed == {"gain": res["gain"], "r": res["r"]}
    after = json.loads((model / INFERENCE_FILE).read_text())
    assert after["warp_gain"] == round(res["gain"], 2)
    assert {k: v for k, v in after.items() if k != "warp_gain"} == {k: v for k, v in before.items() if k != "warp_gain"}


@pytest.mark.parametrize("args, match", [
    (["--data", "{tmp}/nowhere"], "no manifest.jsonl"),
    (["--data", "{synthetic}"], "no photo clips"),
])
def test_calibrate_warp_mistakes_are_one_line(args: list[str], match: str, tmp_path: Path) -> None:
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    (synthetic / "manifest.jsonl").write_text(json.dumps({"clip_id": "a", "path": "clips/a", "identity": "synth-1"}) + "\n")
    argv = [a.format(tmp=tmp_path, synthetic=synthetic) for a in args]
    out = subprocess.run([sys.executable, "-m", "rtavatar", "calibrate-warp", *argv], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert match in lines[0]


@pytest.mark.parametrize("argv, match", [
    (["calibrate-warp"], "--data"),
    (["calibrate-warp", "--data", "d", "--clips", "0"], "outside"),
])
def test_calibrate_warp_bad_arguments_are_refused_at_parse_time(argv: list[str], match: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err
