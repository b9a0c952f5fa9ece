"""Training: overfitting, exact resume, and multi-process (gloo) equivalence to one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rtavatar.checkpoints import latest_checkpoint
from rtavatar.config import from_dict, save_config
from rtavatar.data.dataset import Dataset
from rtavatar.diffusion import x0_from_v
from rtavatar.models.avatarnet import AvatarNet
from rtavatar.models.dit import Conditioning
from rtavatar.training.common import step_generator
from rtavatar.training.data import LatentClips
from rtavatar.training.teacher import (TeacherConfig, draw_noise, from_model_space, load_codec, model_batch, teacher_loss, to_model_space,
                                       train_teacher)

from helpers import fixed_clips, tiny_teacher_cfg

REPO = Path(__file__).resolve().parents[1]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run) / "model.safetensors")


def test_vae_stage_writes_a_loadable_checkpoint(data_and_vae: tuple[Path, Path]) -> None:
    _, vae = data_and_vae
    codec = load_codec(vae)
    z = codec.encode(torch.zeros(1, 3, 64, 64))
    assert z.shape == (1, 4, 8, 8)


def test_tiny_teacher_overfits(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    data, vae = data_and_vae
    cfg = tiny_teacher_cfg(vae, steps=300, batch=4, lr=2e-3)
    cfg.p_drop_audio = cfg.p_drop_ref = cfg.p_drop_state = cfg.p_drop_controls = 0.0
    # Absolute latents: in the reference-residual space much of what is left (blink and head
    # motion timing) cannot be predicted from the conditioning, so the ratio says less there.
    cfg.residual = False
    cfg.train.ema = 0.0
    train_teacher(cfg, data, tmp_path / "run")
    clips = LatentClips(Dataset(data, split="train"), load_codec(vae), tmp_path / "run" / "latent_cache")
    torch.manual_seed(0)
    fresh = AvatarNet(cfg.net)
    trained = AvatarNet(cfg.net)
    trained.load_state_dict(_weights(tmp_path / "run"))

    def eval_loss(net: AvatarNet) -> float:
        losses = []
        for k in range(4):
            gen, noise = step_generator(123, k, 0), step_generator(123, k, 1)
            batch = model_batch(cfg, clips.sample(gen, 4, 3, cfg.net.audio_margin))
            with torch.no_grad():
                losses.append(float(teacher_loss(net.eval(), cfg, batch, draw_noise(cfg, batch["latents"].shape, 1, noise), 1)[0]))
        return sum(losses) / len(losses)

    before, after = eval_loss(fresh), eval_loss(trained)
    assert after < before / 10, f"loss {before:.4f} -> {after:.4f}: not an order of magnitude"


def test_warm_start_copies_matching_weights_and_keeps_new_modules(data_and_vae: tuple[Path, Path], teacher_run: Path) -> None:
    from rtavatar.config import to_dict
    from rtavatar.training.teacher import warm_start

    _, vae = data_and_vae
    cfg = tiny_teacher_cfg(vae, steps=1)
    assert not cfg.net.dit.audio_adaln, "the fixture teacher has no audio adaLN pathway"
    d = to_dict(cfg)
    d["net"]["dit"]["audio_adaln"] = True
    net = AvatarNet(from_dict(TeacherConfig, d).net)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    warm_start(net, teacher_run)
    saved = load_file(latest_checkpoint(teacher_run) / "ema.safetensors")
    for k, v in net.state_dict().items():
        if k.startswith("dit.audio_cond."):
            assert torch.equal(v, fresh[k]), k
        else:
            assert torch.equal(v, saved[k]), k


def test_residual_space_starts_as_a_copy_of_the_reference(data_and_vae: tuple[Path, Path]) -> None:
    data, vae = data_and_vae
    cfg = tiny_teacher_cfg(vae, steps=1)
    cfg.latent_scale, cfg.residual_scale = 0.7, 3.0
    z, ref = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 4, 8, 8)
    y = to_model_space(cfg, z, ref)
    assert torch.allclose(from_model_space(cfg, y, ref), z, atol=1e-6)
    # A fresh model's zero-initialised output predicts v = 0; at t = 1 that is x0 = 0 in model
    # space, i.e. exactly the reference latent.
    net = AvatarNet(cfg.net).eval()
    x = torch.randn(1, 2, 4, 8, 8)
    t = torch.ones(1, 2)
    wav = torch.zeros(1, (2 + 2 * cfg.net.audio_margin) * 640)
    cond = Conditioning(state=torch.zeros(1, 2, dtype=torch.long), controls=torch.zeros(1, 2, 7), ref_latent=ref[:1] * cfg.latent_scale)
    with torch.no_grad():
        x0 = x0_from_v(x, net(x, t, cond, wav=wav), t)
    # (up to alpha(T_MAX) * x = 0.0016 * x, the signal left at the last noise level)
    assert torch.allclose(from_model_space(cfg, x0, ref[:1]), ref[:1, None].expand(1, 2, -1, -1, -1), atol=0.01)


def test_aperture_loss_reads_the_decoded_mouth_and_reaches_the_audio_path(data_and_vae: tuple[Path, Path], teacher_run: Path) -> None:
    from rtavatar.models.syncnet import SyncNet, SyncNetConfig, mouth_crops
    from rtavatar.training.distill import load_teacher_run
    from rtavatar.training.teacher import MouthAperture

    data, vae = data_and_vae
    codec = load_codec(vae)
    torch.manual_seed(0)
    expert = SyncNet(SyncNetConfig(width=8, dim=16))
    # With context reaching the whole latent, the mouth-only decode is the full frame's mouth crop.
    aperture = MouthAperture(codec, expert, margin=100)
    z = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        full = expert.mouth_open(mouth_crops(codec.decode(z.flatten(0, 1)), expert.cfg)).reshape(2, 3)
        assert torch.allclose(aperture(z), full, atol=1e-5)

    cfg, net = load_teacher_run(teacher_run)
    cfg.aperture_weight = 1.0
    # The fixture VAE is trained for 2 steps, so its decodes barely differ: amplify the
    # (untrained) aperture tower so that the differences it reads are not lost in float32.
    with torch.no_grad():
        expert.aperture[-1].weight.mul_(1e4)
    batch = model_batch(cfg, fixed_clips(data, vae, 4, 3, cfg.net.audio_margin))
    noise = draw_noise(cfg, batch["latents"].shape, 1, torch.Generator().manual_seed(0))
    noise["t"][:, 1:] = 0.9  # high noise: the mouth must come from the audio

    def audio_grad(keep_audio: bool, with_aperture: bool) -> tuple[float, torch.Tensor]:
        net.zero_grad()
        noise["keep_audio"] = torch.full((4,), keep_audio)
        loss, _ = teacher_loss(net.train(), cfg, batch, noise, 1, aperture if with_aperture else None)
        loss.backward()
        return float(loss), torch.cat([p.grad.flatten() for p in net.audio_enc.parameters()])

    with_loss, with_grad = audio_grad(True, True)
    plain_loss, plain_grad = audio_grad(True, False)
    assert with_loss > plain_loss
    assert (with_grad - plain_grad).abs().max() > 0.01 * plain_grad.abs().max(), "the aperture term sends no gradient to the audio encoder"
    # Where the audio is dropped (CFG) the term is masked: nothing could lower it.
    assert audio_grad(False, True)[0] == pytest.approx(audio_grad(False, False)[0], abs=1e-7)


def test_killed_and_resumed_run_matches_uninterrupted(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    data, vae = data_and_vae
    train_teacher(tiny_teacher_cfg(vae, steps=20), data, tmp_path / "straight")
    train_teacher(tiny_teacher_cfg(vae, steps=20), data, tmp_path / "killed", stop_after=13)
    assert latest_checkpoint(tmp_path / "killed").name == "step_0000013"
    with (tmp_path / "killed" / "log.jsonl").open("a") as f:  # a step logged after the last checkpoint
        f.write('{"step": 15, "loss": 1.0}\n')
    assert train_teacher(tiny_teacher_cfg(vae, steps=20), data, tmp_path / "killed", resume=True)["steps"] == 20
    assert train_teacher(tiny_teacher_cfg(vae, steps=20), data, tmp_path / "killed", resume=True)["steps"] == 20, "a finished run resumes to a no-op"
    from rtavatar.training.common import iter_logged

    assert [r["step"] for r in iter_logged(tmp_path / "killed")] == [r["step"] for r in iter_logged(tmp_path / "straight")]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    ea = load_file(latest_checkpoint(tmp_path / "straight") / "ema.safetensors")
    eb = load_file(latest_checkpoint(tmp_path / "killed") / "ema.safetensors")
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_match_one(data_and_vae: tuple[Path, Path], tmp_path: Path, fsdp: bool) -> None:
    """torchrun with 2 gloo processes at the same global batch gives the same weights (and EMA)
    as 1 process: DDP, or FSDP2 sharding, which also stops after 4 steps and resumes to 6 from
    its gathered checkpoint (sharded optimizer state round trip)."""
    data, vae = data_and_vae
    cfg = tiny_teacher_cfg(vae, steps=6, batch=4)
    cfg.train.ema = 0.9
    cfg.train.fsdp = fsdp
    save_config(cfg, tmp_path / "teacher.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "rtavatar", "train", "teacher", "--config", str(tmp_path / "teacher.yaml"), "--data", str(data)]
    subprocess.run(base + ["--out", str(tmp_path / "one")], check=True, env=env, cwd=REPO, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={29533 + fsdp}", "-m", "rtavatar"]
    two = torchrun + base[3:] + ["--out", str(tmp_path / "two")]
    for extra in (["--steps", "4"], ["--resume"]) if fsdp else ([],):
        proc = subprocess.run(two + extra, env=env, cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert latest_checkpoint(tmp_path / "two").name == "step_0000006"
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    torch.manual_seed(cfg.train.seed)
    init = AvatarNet(cfg.net).state_dict()
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3, "training moved the weights"
    assert diff < 1e-4, f"2-process weights differ from 1-process by {diff}"
    ea = load_file(latest_checkpoint(tmp_path / "one") / "ema.safetensors")
    eb = load_file(latest_checkpoint(tmp_path / "two") / "ema.safetensors")
    assert max(float((ea[k] - eb[k]).abs().max()) for k in ea) < 1e-4
    if fsdp:  # the gathered checkpoint (name-keyed optimizer state) resumes in one unsharded process
        subprocess.run(base + ["--out", str(tmp_path / "two"), "--resume", "--steps", "7"], check=True, env=env, cwd=REPO,
                       capture_output=True)
        assert latest_checkpoint(tmp_path / "two").name == "step_0000007"


def test_generate_writes_video_matching_audio_length(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf
    from PIL import Image

    from rtavatar.cli import main
    from rtavatar.errors import RTAvatarError
    from rtavatar.engine import Avatar
    from rtavatar.media import read_video
    from rtavatar.models.conditioning import parse_expression

    data, vae = data_and_vae
    cfg = tiny_teacher_cfg(vae, steps=2)
    cfg.sample_every, cfg.sample_seconds, cfg.sample_steps = 2, 1.0, 2
    train_teacher(cfg, data, tmp_path / "teacher")
    sample = read_video(tmp_path / "teacher" / "samples" / "step_0000002.mp4")
    assert sample.frames.shape == (25, 64, 128, 3), "sample video: generated | ground truth side by side"
    assert (tmp_path / "teacher" / "samples" / "step_0000002.png").is_file()
    clip = Dataset(data).load(0)
    Image.fromarray(clip.frames[0]).resize((300, 260)).save(tmp_path / "face.png")  # non-square, other size (>= MIN_PICTURE)
    audio = clip.audio[: 16000 + 3000]  # 1.1875 s -> 30 frames (last one partial)
    sf.write(tmp_path / "speech.wav", audio, 16000)
    out = tmp_path / "out.mp4"
    assert main(["generate", "--image", str(tmp_path / "face.png"), "--audio", str(tmp_path / "speech.wav"), "--out", str(out),
                 "--checkpoint", str(tmp_path / "teacher"), "--steps", "2", "--expression", "smile=0.5", "--align", "center",
                 "--keep-parted-lips"]) == 0
    video = read_video(out)
    assert len(video.frames) == int(np.ceil(len(audio) / 640)) == 30
    assert video.frames.shape[1:] == (260, 300, 3), "pasted back into the picture at its own size"
    # Chunking: motion frames carried across chunks; the result does not depend on the progress bar.
    avatar = Avatar.load(tmp_path / "teacher")
    a = avatar.generate(clip.frames[0], audio, align="center", steps=2, first_chunk=2, chunk=3)
    assert a.shape == (30, 64, 64, 3)
    with pytest.raises(RTAvatarError, match="unknown expression control"):
        parse_expression("grin=1")
    with pytest.raises(RTAvatarError, match="needs a teacher, distill or eft run"):
        Avatar.load(vae)
