"""Ordinary user mistakes and interruptions: nothing is lost, every error is one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from rtavatar.checkpoints import checkpoint_dirs, latest_checkpoint, resolve_checkpoint
from rtavatar.cli import main
from rtavatar.errors import CheckpointError, RTAvatarError


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtavatar", *args], capture_output=True, text=True, timeout=timeout)


def vae_args(data: Path, run: Path, steps: int = 4) -> list[str]:
    return ["train", "vae", "--data", str(data), "--out", str(run), "--steps", str(steps), "--batch-size", "2"]


@pytest.fixture()
def vae_cfg_file(tmp_path: Path) -> Path:
    p = tmp_path / "vae.yaml"
    p.write_text("vae: {channels: 8}\ncrop: 32\ntrain: {ckpt_every: 2, keep_checkpoints: 2, ema: 0.0, log_every: 1}\n")
    return p


def test_rerun_without_resume_keeps_the_old_run_and_fails(data_and_vae: tuple[Path, Path], tmp_path: Path,
                                                          vae_cfg_file: Path) -> None:
    data, _ = data_and_vae
    run = tmp_path / "run"
    assert main([*vae_args(data, run), "--config", str(vae_cfg_file)]) == 0
    before = {p.name: (p / "model.safetensors").read_bytes() for p in checkpoint_dirs(run)}
    log_before = (run / "log.jsonl").read_text()
    assert main([*vae_args(data, run, steps=2), "--config", str(vae_cfg_file)]) == 2
    assert {p.name: (p / "model.safetensors").read_bytes() for p in checkpoint_dirs(run)} == before
    assert (run / "log.jsonl").read_text() == log_before
    assert main([*vae_args(data, run, steps=2), "--config", str(vae_cfg_file), "--overwrite"]) == 0
    assert [p.name for p in checkpoint_dirs(run)] == ["step_0000002"], "started over"


def test_damaged_checkpoints_are_named_and_resume_falls_back(data_and_vae: tuple[Path, Path], tmp_path: Path,
                                                             vae_cfg_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, _ = data_and_vae
    run = tmp_path / "run"
    assert main([*vae_args(data, run), "--config", str(vae_cfg_file)]) == 0
    newest, older = checkpoint_dirs(run)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="model.safetensors: .*truncated"):
        resolve_checkpoint(newest)
    assert latest_checkpoint(run) == older and "skipping damaged checkpoint step_0000004" in caplog.text
    assert main([*vae_args(data, run, steps=6), "--config", str(vae_cfg_file), "--resume"]) == 0
    assert latest_checkpoint(run).name == "step_0000006"
    # A flipped byte inside the data (sizes intact) is caught by the manifest's hash; a zero-byte
    # state.pt and a broken config.json are named too.
    ck = latest_checkpoint(run)
    raw = bytearray((ck / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (ck / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="model.safetensors: damaged"):
        resolve_checkpoint(ck)
    (ck / "model.safetensors").write_bytes(bytes(raw[:-5]) + bytes([raw[-5] ^ 0xFF]) + bytes(raw[-4:]))
    resolve_checkpoint(ck)  # restored: intact again
    (ck / "state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="state.pt: truncated or damaged"):
        resolve_checkpoint(ck)


def test_self_contained_student_notices_a_damaged_file_it_does_not_load(student_run: Path, tmp_path: Path) -> None:
    """generate loads the EMA; a damaged model.safetensors beside it must still be noticed."""
    import shutil

    from rtavatar.engine import Avatar

    run = tmp_path / "student"
    shutil.copytree(student_run, run)
    ck = latest_checkpoint(run)
    assert (ck / "ema.safetensors").is_file()
    (ck / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Avatar.load(ck)
    assert Avatar.load(run).bundle.checkpoint != ck, "the run falls back to its previous intact checkpoint"


@pytest.mark.parametrize("argv, match", [
    (["generate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--checkpoint", "r", "--guidance", "nan"], "outside"),
    (["generate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--checkpoint", "r", "--guidance", "inf"], "outside"),
    (["generate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--checkpoint", "r", "--steps", "0"], "outside"),
    (["generate", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--checkpoint", "r", "--steps", "-5"], "outside"),
    (["synth-data", "--out", "d", "--clips", "-3"], "outside"),
    (["synth-data", "--out", "d", "--clips", "2", "--identities", "-2"], "outside"),
    (["synth-data", "--out", "d", "--clips", "2", "--resolution", "7"], "outside"),
    (["eval", "--checkpoint", "r", "--expert", "e", "--data", "d", "--seconds", "-1"], "outside"),
    (["train", "vae", "--data", "d", "--out", "r", "--steps", "-1"], "outside"),
    # 0 is not "no override": an override a user types is a real value, and 0 is not one
    (["train", "vae", "--data", "d", "--out", "r", "--batch-size", "0"], "outside"),
    (["train", "vae", "--data", "d", "--out", "r", "--steps", "0"], "outside"),
    (["synth-data", "--out", "d", "--clips", "2", "--workers", "0"], "outside"),
    (["prepare", "--videos", "v", "--out", "d", "--workers", "0"], "outside"),
    (["bench", "--threads", "0"], "outside"),
    (["bench", "--first-chunk", "0"], "outside"),
    (["bench", "--seconds", "nan"], "outside"),
])
def test_bad_numbers_are_refused_at_parse_time(argv: list[str], match: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and match in capsys.readouterr().err


def test_bad_expression_values_are_refused() -> None:
    from rtavatar.models.conditioning import parse_expression

    for text in ("yaw=nan", "yaw=inf", "smile=9", "grin=1", "smile=abc"):
        with pytest.raises(RTAvatarError):
            parse_expression(text)
    assert parse_expression("smile=0.5, yaw=-10") == {"smile": 0.5, "yaw": -10.0}


def test_user_mistakes_give_one_line_and_no_traceback(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    from rtavatar.data.synth import SynthConfig, synthesize_dataset

    data, vae = data_and_vae
    only_test = tmp_path / "only_test"
    synthesize_dataset(SynthConfig(clips=1, seed=2, resolution=32, seconds=(1.0, 1.0), workers=1, test_fraction=1.0), only_test,
                       progress=False)
    (tmp_path / "bad.yaml").write_text("train: {steps: 3\n  lr: [\n")
    (tmp_path / "unknown.yaml").write_text("train: {stepz: 3}\n")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "face.png").write_bytes(b"not an image")
    cases = {
        "empty split": (vae_args(only_test, tmp_path / "r1"), "no clips in split 'train'"),
        "wrong run kind": (["generate", "--image", str(tmp_path / "face.png"), "--audio", "x.wav", "--out", str(tmp_path / "o.mp4"),
                            "--checkpoint", str(vae)], "needs a teacher, distill or eft run"),
        "malformed yaml": ([*vae_args(data, tmp_path / "r2"), "--config", str(tmp_path / "bad.yaml")], "not valid YAML at line"),
        "unknown key": ([*vae_args(data, tmp_path / "r3"), "--config", str(tmp_path / "unknown.yaml")], "unknown key(s) ['stepz']"),
        "no test split": (["eval", "--checkpoint", str(vae), "--expert", str(vae), "--data", str(data)], "no clips in split 'test'"),
        "out is a directory": (["generate", "--image", "a.png", "--audio", "a.wav", "--out", str(tmp_path / "outdir"),
                                "--checkpoint", str(vae)], "is a directory"),
        "no checkpoint": (["eval", "--expert", str(vae), "--data", str(data)], "at least one --checkpoint"),
        "same checkpoint twice": (["eval", "--checkpoint", str(vae), "--checkpoint", str(vae), "--expert", str(vae), "--data", str(data)],
                                  "listed twice"),
        "missing run": (["generate", "--image", "a.png", "--audio", "a.wav", "--out", str(tmp_path / "o.mp4"),
                         "--checkpoint", str(tmp_path / "nope")], "no such file or directory"),
    }
    for name, (argv, match) in cases.items():
        out = cli(*argv)
        lines = [ln for ln in out.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        assert out.returncode == 2, (name, out.stderr[-1500:])
        assert "Traceback" not in out.stderr and len(lines) == 1, (name, out.stderr[-1500:])
        assert match in lines[0], (name, lines[0])


def test_killing_synth_data_leaves_no_worker_and_reruns_clean_up(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "rtavatar", "synth-data", "--out", str(out), "--clips", "40", "--workers", "2",
                             "--resolution", "64", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children(pid: int) -> list[int]:
        kids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d.name))
                except (OSError, IndexError, ValueError):
                    pass
        return kids

    deadline = time.time() + 120
    while time.time() < deadline and not (out / "clips").is_dir():
        time.sleep(0.2)
    workers = children(proc.pid)
    assert len(workers) >= 2, "the pool is running"
    (out / "clips" / ".video.mp4.deadbeef.tmp.mp4").write_bytes(b"debris")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(2.0)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in (Path(f"/proc/{w}/stat").read_text().split()[2:3] or [""])]
    assert alive == [], f"workers {alive} outlived their parent"
    assert main(["synth-data", "--out", str(out), "--clips", "1", "--workers", "1", "--resolution", "64", "--quiet"]) == 0
    assert not list(out.rglob(".*.tmp*")), "a rerun removes what the killed run left behind"


def test_same_seed_vae_runs_are_identical(data_and_vae: tuple[Path, Path], tmp_path: Path, vae_cfg_file: Path) -> None:
    data, _ = data_and_vae
    for name in ("a", "b"):
        assert main([*vae_args(data, tmp_path / name, steps=2), "--config", str(vae_cfg_file)]) == 0
    wa, wb = (load_file(latest_checkpoint(tmp_path / n) / "model.safetensors") for n in ("a", "b"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_runs_trained_with_relative_paths_work_from_any_directory(data_and_vae: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil

    from helpers import tiny_teacher_cfg
    from rtavatar.config import save_config
    from rtavatar.engine import Avatar

    data, vae = data_and_vae
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    shutil.copytree(vae, work / "runs" / "vae")
    cfg = tiny_teacher_cfg(Path("unused"), steps=2)
    cfg.vae_checkpoint = ""
    save_config(cfg, work / "teacher.yaml")
    monkeypatch.chdir(work)
    assert main(["train", "teacher", "--config", "teacher.yaml", "--data", str(data), "--out", "runs/teacher", "--vae", "runs/vae"]) == 0
    assert main(["train", "distill", "--teacher", "runs/teacher", "--data", str(data), "--out", "runs/student", "--steps", "2",
                 "--batch-size", "2"]) == 0
    stored = json.loads((latest_checkpoint(work / "runs" / "teacher") / "config.json").read_text())["vae_checkpoint"]
    assert Path(stored).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for run in ("teacher", "student"):
        assert Avatar.load(work / "runs" / run).generate(np.zeros((64, 64, 3), np.uint8), np.zeros(1280, np.float32),
                                                        align="center").shape == (2, 64, 64, 3)
    # A checkpoint from before self-contained checkpoints, with the VAE path stored as typed.
    legacy = tmp_path / "legacy"
    shutil.copytree(work / "runs", legacy / "runs")
    ck = latest_checkpoint(legacy / "runs" / "teacher")
    for name in ("inference.json", "vae.safetensors", "manifest.json"):
        (ck / name).unlink()
    raw = json.loads((ck / "config.json").read_text())
    raw["vae_checkpoint"] = "runs/vae"
    (ck / "config.json").write_text(json.dumps(raw))
    assert Avatar.load(ck).bundle.codec is not None, "found relative to the directories above the checkpoint"


def test_non_finite_config_values_are_refused(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    data, vae = data_and_vae
    for text, match in (("p_drop_audio: 1.5\n", "p_drop_audio = 1.5 must lie in"), ("motion_noise: .nan\n", "not a finite number"),
                        ("train: {lr: .inf}\n", "not a finite number")):
        (tmp_path / "t.yaml").write_text(text)
        out = cli("train", "teacher", "--config", str(tmp_path / "t.yaml"), "--data", str(data), "--out", str(tmp_path / "r"),
                  "--vae", str(vae))
        assert out.returncode == 2 and "Traceback" not in out.stderr and match in out.stderr, out.stderr[-800:]
