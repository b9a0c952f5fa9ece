"""Consistency distillation: the teacher solver, the target network, and that a few steps of
distillation bring the 1-step student closer to the teacher's multi-step samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtavatar.diffusion import cfg_denoiser, consistency_denoiser, sample_consistency, sample_ddim, v_denoiser
from rtavatar.models.avatarnet import AvatarNet
from rtavatar.models.discriminator import (AvatarDiscriminator, DiscConfig, ExpertBackbone, TeacherBackbone, adversarial_losses,
                                          hinge_d)
from rtavatar.models.syncnet import SyncNet, SyncNetConfig
from rtavatar.models.dit import Conditioning
from rtavatar.data.dataset import Dataset
from rtavatar.checkpoints import latest_checkpoint
from rtavatar.training.common import TrainConfig, load_state, step_generator
from rtavatar.training.distill import (DistillConfig, distill_loss, draw_distill_noise, load_student, load_teacher_run, pseudo_huber,
                                       train_distill)
from rtavatar.training.teacher import load_codec, model_batch

from helpers import fixed_clips


def _fixed_batch(tcfg, data: Path, vae: Path, n: int = 4) -> dict:  # noqa: ANN001
    return model_batch(tcfg, fixed_clips(data, vae, n, 3, tcfg.net.audio_margin))


def _one_step_error(net: AvatarNet, tcfg, teacher: AvatarNet, batch: dict, guidance: float = 2.0) -> float:  # noqa: ANN001
    """MSE between the student's 1-step sample and the teacher's 20-step DDIM+CFG sample from
    the same noise (all frames generated, no context)."""
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(5))
    active = torch.ones(x.shape[:2], dtype=torch.bool)
    base = dict(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"])
    wav = batch["audio"]
    with torch.no_grad():
        t_den = v_denoiser(lambda x, t, c: teacher(x, t, c, wav=wav))
        uncond = Conditioning(**base, keep_audio=torch.zeros(len(x), dtype=torch.bool))
        ref = sample_ddim(cfg_denoiser(t_den, uncond, guidance), x, active, Conditioning(**base), steps=20)
        f = consistency_denoiser(v_denoiser(lambda x, t, c: net(x, t, c, wav=wav)))
        one = sample_consistency(f, x, active, Conditioning(**base, guidance=torch.full((len(x),), guidance)), steps=1)
    return float((one - ref).pow(2).mean())


def test_pseudo_huber_is_quadratic_near_zero_and_linear_far() -> None:
    d = torch.tensor([1e-4, 10.0]).reshape(2, 1, 1)
    out = pseudo_huber(d, c=0.001).flatten()
    assert out[0] == pytest.approx(0.5 * 1e-8 / 0.001, rel=1e-2)  # ~ d^2 / (2c)
    assert out[1] == pytest.approx(10.0 - 0.001, rel=1e-4)


def test_distill_loss_trains_the_student_only(data_and_vae: tuple[Path, Path], teacher_run: Path) -> None:
    data, vae = data_and_vae
    tcfg, tnet = load_teacher_run(teacher_run)
    cfg = DistillConfig(teacher=tcfg)
    student, target = AvatarNet(tcfg.net), AvatarNet(tcfg.net)
    student.load_state_dict(tnet.state_dict())
    target.load_state_dict(tnet.state_dict())
    batch = _fixed_batch(tcfg, data, vae)
    noise = draw_distill_noise(cfg, batch["latents"].shape, 1, step_generator(0, 0, 1))
    assert noise["n"].min() >= cfg.skip and float(noise["w"].min()) >= cfg.guidance_min
    loss, pred, stats = distill_loss(student, target, tnet.requires_grad_(False), cfg, batch, noise, motion=1)
    assert pred.shape == batch["latents"].shape
    loss.backward()
    assert loss.item() > 0 and stats["x0_mse"] > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in target.parameters()) and all(p.grad is None for p in tnet.parameters())
    # The guidance embedding starts at zero: at init the student's guidance input changes nothing.
    assert student.dit.g_mlp[2].weight.abs().sum() == 0


def test_distillation_lowers_the_one_step_error(data_and_vae: tuple[Path, Path], teacher_run: Path, student_run: Path) -> None:
    data, vae = data_and_vae
    tcfg, tnet = load_teacher_run(teacher_run)
    batch = _fixed_batch(tcfg, data, vae)
    before = _one_step_error(tnet, tcfg, tnet, batch)  # the student at init = the teacher taking one step
    student = AvatarNet(tcfg.net)
    load_student(student, latest_checkpoint(student_run), ema=True)
    after = _one_step_error(student, tcfg, tnet, batch)
    assert after < 0.8 * before, f"1-step error vs the 20-step teacher: {before:.4f} -> {after:.4f}"


def test_distill_warm_start_branches_off_another_distill_run(teacher_run: Path, student_run: Path, data_and_vae: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    data, _ = data_and_vae
    cfg = DistillConfig(teacher_checkpoint=str(teacher_run), init_from=str(student_run),
                        train=TrainConfig(steps=1, batch_size=2, lr=0.0, warmup=0, ema=0.95, ckpt_every=1, log_every=1))
    train_distill(cfg, data, tmp_path / "branch")
    tcfg, _ = load_teacher_run(teacher_run)
    src, branch = AvatarNet(tcfg.net), AvatarNet(tcfg.net)
    load_student(src, latest_checkpoint(student_run), ema=True)
    load_student(branch, latest_checkpoint(tmp_path / "branch"), ema=False)  # lr 0: still the initial weights
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), branch.state_dict().values()))
    assert src.dit.g_mlp[2].weight.abs().sum() > 0  # the distilled guidance embedding came along, not the teacher's zeros
    with pytest.raises(ValueError, match="not a distill checkpoint"):
        train_distill(DistillConfig(teacher_checkpoint=str(teacher_run), init_from=str(teacher_run)), data, tmp_path / "bad")


def test_student_checkpoint_generates_with_the_consistency_sampler(data_and_vae: tuple[Path, Path], teacher_run: Path,
                                                                     tmp_path: Path) -> None:
    import numpy as np

    from rtavatar.engine import Avatar

    data, _ = data_and_vae
    cfg = DistillConfig(teacher_checkpoint=str(teacher_run), adversarial=True, disc=DiscConfig(hidden=16),
                        train=TrainConfig(steps=2, batch_size=2, ema=0.95, ckpt_every=2, log_every=1))
    train_distill(cfg, data, tmp_path / "student")
    logged = (tmp_path / "student" / "log.jsonl").read_text()
    assert '"d_lip_real"' in logged and '"g_loss"' in logged
    # The discriminator's heads have their own optimizer group at lr_mult x the student's lr.
    groups = load_state(latest_checkpoint(tmp_path / "student"))["optimizer"]["param_groups"]
    n_student = len(list(AvatarNet(load_teacher_run(teacher_run)[0].net).parameters()))
    assert len(groups) == 2 and len(groups[0]["params"]) == n_student
    assert groups[1]["lr"] == pytest.approx(cfg.disc.lr_mult * groups[0]["lr"]) and groups[0]["lr"] > 0
    avatar = Avatar.load(tmp_path / "student")
    sampling = avatar.bundle.cfg.sampling
    assert (sampling.sampler, sampling.steps, sampling.guidance, sampling.guidance_input) == ("consistency", 1, 2.0, True)
    clip = Dataset(data).load(0)
    audio = clip.audio[: 640 * 11 + 100]  # 11.2 frames -> 12
    for steps in (1, 2):
        frames = avatar.generate(clip.frames[0], audio, align="center", steps=steps)
        assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8


def test_hinge_losses_on_known_scores() -> None:
    assert hinge_d(torch.tensor([2.0]), [torch.tensor([-2.0])]).item() == 0.0  # confident and right: no loss
    assert hinge_d(torch.tensor([0.0]), [torch.tensor([0.0])]).item() == 2.0
    assert hinge_d(torch.tensor([1.0]), [torch.tensor([0.5]), torch.tensor([-1.0])]).item() == pytest.approx(0.75)


@pytest.mark.parametrize("backbone_kind,lip,motion", [("teacher", True, True), ("teacher", True, False), ("teacher", False, True),
                                                     ("expert", True, True)])
def test_discriminator_gradients_reach_the_right_places(data_and_vae: tuple[Path, Path], teacher_run: Path, backbone_kind: str,
                                                        lip: bool, motion: bool) -> None:
    tcfg, tnet = load_teacher_run(teacher_run)
    tnet.requires_grad_(False)
    if backbone_kind == "teacher":
        backbone = TeacherBackbone(tnet, DiscConfig().layers)
        frozen = list(tnet.parameters())
    else:
        torch.manual_seed(0)
        expert = SyncNet(SyncNetConfig(width=8, dim=16))
        backbone = ExpertBackbone(expert, load_codec(data_and_vae[1]), lambda x, ref: x, tcfg.net.audio_margin)
        frozen = list(expert.parameters()) + list(backbone.codec.parameters())
    disc = AvatarDiscriminator.on(DiscConfig(lip_head=lip, motion_head=motion, hidden=16), backbone)
    g = torch.Generator().manual_seed(0)
    b, f = 2, 3
    real = torch.randn(b, f, 4, 8, 8, generator=g)
    fake = torch.randn(b, f, 4, 8, 8, generator=g).requires_grad_(True)
    wav = torch.randn(b, (f + 2 * tcfg.net.audio_margin) * 640, generator=g) * 0.1
    cond = Conditioning(state=torch.zeros(b, f, dtype=torch.long), controls=torch.zeros(b, f, 7), ref_latent=real[:, 0])
    d_loss, g_loss, stats = adversarial_losses(disc, backbone, real, fake, cond, wav, torch.randn(real.shape, generator=g),
                                               torch.full((b,), 0.3))
    heads = {k.split("_")[1] for k in stats}
    assert heads == ({"lip"} if lip else set()) | ({"motion"} if motion else set())
    g_loss.backward(retain_graph=True)
    assert fake.grad is not None and fake.grad.abs().sum() > 0, "the generator loss reaches the student's output"
    assert all(p.grad is None for p in disc.parameters()), "...but not the discriminator's weights"
    fake.grad = None
    d_loss.backward()
    assert fake.grad is None, "the discriminator loss sees the fake detached"
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)
    assert all(p.grad is None for p in frozen), "the backbone stays frozen"


def test_expert_backbone_reads_centred_windows(data_and_vae: tuple[Path, Path]) -> None:
    """Frame i's features are the expert's embeddings of the 5-frame window centred on i
    (video: edge frames repeated; audio: from the margins every training window carries)."""
    from rtavatar.models.syncnet import decode_mouth

    torch.manual_seed(0)
    expert = SyncNet(SyncNetConfig(width=8, dim=16)).eval()
    codec = load_codec(data_and_vae[1])
    margin, b, f = 4, 2, 4
    backbone = ExpertBackbone(expert, codec, lambda x, ref: x, margin)
    g = torch.Generator().manual_seed(0)
    z, wav = torch.randn(b, f, 4, 8, 8, generator=g), torch.randn(b, (f + 2 * margin) * 640, generator=g)
    with torch.no_grad():
        audio, _ = backbone.audio(wav, f)
        feats = backbone.features(z, Conditioning(), audio, z, torch.zeros(b))
        crops = decode_mouth(codec, z, expert.cfg)
        for i in range(f):
            lo = (margin - 2 + i) * 640
            assert torch.allclose(audio[:, i], expert.embed_audio(wav[:, lo: lo + 5 * 640]), atol=1e-5)
            idx = [min(max(k, 0), f - 1) for k in range(i - 2, i + 3)]
            assert torch.allclose(feats[:, i, 0], expert.embed_video(crops[:, idx]), atol=1e-5)


def test_r1_penalises_the_discriminator_slope_on_real_features(teacher_run: Path) -> None:
    tcfg, tnet = load_teacher_run(teacher_run)
    tnet.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    b, f = 2, 3
    real, fake = torch.randn(b, f, 4, 8, 8, generator=g), torch.randn(b, f, 4, 8, 8, generator=g)
    wav = torch.randn(b, (f + 2 * tcfg.net.audio_margin) * 640, generator=g) * 0.1
    cond = Conditioning(state=torch.zeros(b, f, dtype=torch.long), controls=torch.zeros(b, f, 7), ref_latent=real[:, 0])
    eps = torch.randn(real.shape, generator=g)
    backbone = TeacherBackbone(tnet, DiscConfig().layers)
    losses = {}
    for r1 in (0.0, 10.0):
        torch.manual_seed(0)
        disc = AvatarDiscriminator.on(DiscConfig(hidden=16, r1=r1), backbone)
        d_loss, _, stats = adversarial_losses(disc, backbone, real, fake, cond, wav, eps, torch.full((b,), 0.3))
        d_loss.backward()
        losses[r1] = (float(d_loss.detach()), stats.get("r1"))
        assert all(p.grad is not None for p in disc.parameters())
    assert losses[0.0][1] is None and losses[10.0][1] > 0
    assert losses[10.0][0] == pytest.approx(losses[0.0][0] + 5.0 * losses[10.0][1], rel=1e-4)
