"""Editing fine-tuning: the prior video, that EFT lowers the one-step edit error against real
clips, and that generation starts from the same noised prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtavatar.checkpoints import DEFAULT_MODEL, latest_checkpoint
from rtavatar.data.dataset import Dataset
from rtavatar.diffusion import consistency_denoiser, sample_consistency, v_denoiser
from rtavatar.models.avatarnet import AvatarNet
from rtavatar.models.dit import Conditioning
from rtavatar.training.common import TrainConfig
from rtavatar.training.distill import load_student
from rtavatar.training.eft import EFTConfig, edit_prior, edit_start, load_distill_run, train_eft
from rtavatar.training.teacher import model_batch, to_model_space

from helpers import fixed_clips


def test_edit_prior_repeats_the_last_motion_frame_or_the_reference() -> None:
    ctx = torch.arange(2 * 2 * 3, dtype=torch.float).reshape(2, 2, 3, 1, 1)
    ref = -torch.ones(2, 3, 1, 1)
    prior = edit_prior("motion", ctx, ref, new=4)
    assert prior.shape == (2, 4, 3, 1, 1) and torch.equal(prior[:, 2], ctx[:, -1])
    assert torch.equal(edit_prior("motion", ctx[:, :0], ref, 4)[:, 0], ref), "no motion frames: the reference"
    assert torch.equal(edit_prior("reference", ctx, ref, 4)[:, 3], ref)
    with pytest.raises(ValueError, match="unknown EFT prior"):
        edit_prior("noise", ctx, ref, 4)
    cfg = EFTConfig(t_edit=0.5)
    eps = torch.randn(2, 6, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    x = edit_start(cfg, ctx, ref, eps)
    assert torch.equal(x[:, :2], ctx), "context frames stay clean"
    expected = np.cos(np.pi / 4) * ctx[:, -1] + np.sin(np.pi / 4) * eps[:, 2]
    assert torch.allclose(x[:, 2], expected, atol=1e-6)


def _edit_error(net: AvatarNet, cfg: EFTConfig, batch: dict, ref_model: torch.Tensor, motion: int = 1) -> float:
    """MSE of the one-step edit from the EFT start against the real clip's new frames."""
    x0 = batch["latents"]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x = edit_start(cfg, x0[:, :motion], ref_model, eps)
    active = torch.zeros(x0.shape[:2], dtype=torch.bool)
    active[:, motion:] = True
    wav = batch["audio"]
    cond = Conditioning(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"],
                        guidance=torch.full((len(x),), cfg.student.default_guidance))
    with torch.no_grad():
        f = consistency_denoiser(v_denoiser(lambda x_, t, c: net(x_, t, c, wav=wav)))
        out = sample_consistency(f, x, active, cond, steps=1, t_start=cfg.t_edit)
    return float((out - x0)[:, motion:].pow(2).mean())


def test_eft_lowers_the_one_step_edit_error(data_and_vae: tuple[Path, Path], student_run: Path, tmp_path: Path) -> None:
    data, vae = data_and_vae
    cfg = EFTConfig(distill_checkpoint=str(student_run), adversarial=False, t_edit=0.6,
                    train=TrainConfig(steps=200, batch_size=4, lr=1e-3, warmup=5, ema=0.9, ckpt_every=100, log_every=10))
    train_eft(cfg, data, tmp_path / "eft")
    scfg, student = load_distill_run(student_run)[:2]
    cfg.student = scfg
    raw = fixed_clips(data, vae, 4, 4, scfg.teacher.net.audio_margin)
    batch = model_batch(scfg.teacher, raw)
    ref_model = to_model_space(scfg.teacher, raw["ref"][:, None], raw["ref"])[:, 0]
    before = _edit_error(student, cfg, batch, ref_model)
    tuned = AvatarNet(scfg.teacher.net)
    load_student(tuned, latest_checkpoint(tmp_path / "eft"), ema=True)
    after = _edit_error(tuned, cfg, batch, ref_model)
    assert after < 0.8 * before, f"one-step edit error vs real clips: {before:.4f} -> {after:.4f}"


def test_eft_checkpoint_generates_from_the_noised_prior(data_and_vae: tuple[Path, Path], student_run: Path, tmp_path: Path) -> None:
    """With t_edit ~ 0 the start is the prior itself and f(x, ~0) ~ x (boundary condition), so
    every latent must be the reference's, held: proof that generation starts where EFT trained."""
    from rtavatar.engine import Avatar
    from rtavatar.engine.offline import generate_latents
    from rtavatar.models.syncnet import SyncNetConfig
    from rtavatar.training.syncnet import SyncStageConfig, train_syncnet

    data, _ = data_and_vae
    # The discriminator on the sync-expert backbone (the distill test covers the teacher one).
    expert = tmp_path / "expert"
    train_syncnet(SyncStageConfig(net=SyncNetConfig(width=8, dim=16), train=TrainConfig(steps=2, batch_size=4, ckpt_every=2)), data, expert)
    cfg = EFTConfig(distill_checkpoint=str(student_run), t_edit=1e-4, train=TrainConfig(steps=2, batch_size=2, ema=0.9, ckpt_every=2))
    cfg.disc.hidden, cfg.disc.backbone, cfg.disc.expert_checkpoint = 16, "expert", str(expert)
    train_eft(cfg, data, tmp_path / "eft")
    logged = (tmp_path / "eft" / "log.jsonl").read_text()
    assert '"d_motion_real"' in logged and '"d_lip_real"' in logged, "the discriminator took part"
    avatar = Avatar.load(tmp_path / "eft")
    sampling = avatar.bundle.cfg.sampling
    assert sampling.start == "prior" and sampling.t_edit == pytest.approx(1e-4)
    clip = Dataset(data).load(0)
    assert avatar.generate(clip.frames[0], clip.audio[: 640 * 9], align="center").shape == (9, 64, 64, 3)

    def latents(a: Avatar):  # noqa: ANN202 - raw VAE latents (9, C, h, w) and the reference's
        cs = a.sampler()
        ref = cs.reference(clip.frames[0])
        z = generate_latents(cs, ref, clip.audio[: 640 * 9], progress=False)
        return a.bundle.cfg.space.from_model(z, ref.raw)[0], ref.raw

    z, ref = latents(avatar)
    assert z.shape == (9, *ref.shape[1:])
    scale = avatar.bundle.cfg.space.residual_scale  # compare in model space (residuals in units of their training std)
    moving, _ = latents(Avatar.load(student_run))
    assert (z - ref).abs().max() * scale < 0.05, "every frame is the reference latent"
    assert (moving - ref).abs().mean() * scale > 0.2, "...which a plain one-step sample is not"


def test_eft_fine_tunes_an_exported_model_with_the_aperture_loss(data_and_vae: tuple[Path, Path], student_run: Path,
                                                                  tmp_path: Path) -> None:
    """A model without its training runs (an export, like the shipped one) is fine-tuned: the
    run starts from its weights and keeps its latent space; the sync expert's mouth-opening loss
    takes part; exactly one start must be named."""
    from safetensors.torch import load_file

    from rtavatar.checkpoints import export_checkpoint, load_bundle
    from rtavatar.models.syncnet import SyncNetConfig
    from rtavatar.training.eft import is_export
    from rtavatar.training.syncnet import SyncStageConfig, train_syncnet

    from rtavatar.checkpoints import save_motion
    from rtavatar.models.audio import AudioConfig
    from rtavatar.models.motion import MotionConfig, MotionNet

    data, _ = data_and_vae
    save_motion(tmp_path, MotionNet(MotionConfig(audio=AudioConfig(kind="mel", hidden=16), hidden=16, layers=1, lookahead=2)))
    export = export_checkpoint(student_run, tmp_path / "export", motion=tmp_path / "motion.safetensors")  # as the shipped one
    assert is_export(str(export)) and not is_export(str(student_run)) and is_export(DEFAULT_MODEL)
    expert = tmp_path / "expert"
    train_syncnet(SyncStageConfig(net=SyncNetConfig(width=8, dim=16), train=TrainConfig(steps=2, batch_size=4, ckpt_every=2)), data, expert)
    train = TrainConfig(steps=2, batch_size=2, lr=1e-7, warmup=1, ema=0.9, ckpt_every=2, log_every=1)
    with pytest.raises(ValueError, match="one of distill_checkpoint"):
        train_eft(EFTConfig(distill_checkpoint=str(student_run), init_pretrained=str(export), train=train), data, tmp_path / "x")
    with pytest.raises(ValueError, match="carries no teacher"):
        train_eft(EFTConfig(init_pretrained=str(export), train=train), data, tmp_path / "y")  # default disc backbone: teacher
    cfg = EFTConfig(init_pretrained=str(export), adversarial=False, aperture_weight=0.5, sync_expert=str(expert), train=train)
    train_eft(cfg, data, tmp_path / "eft")
    assert '"aperture"' in (tmp_path / "eft" / "log.jsonl").read_text(), "the aperture loss took part"
    tuned, shipped = load_bundle(tmp_path / "eft"), load_bundle(export)
    assert tuned.cfg.space == shipped.cfg.space and tuned.cfg.net == shipped.cfg.net
    assert tuned.cfg.sampling.start == "prior"
    before = load_file(export / "model.safetensors")
    after = tuned.net.state_dict()
    worst = max(float((after[k] - v.float()).abs().max()) for k, v in before.items())
    assert worst < 1e-2, f"the run starts from the export's weights (max change {worst})"
    # `export --prior`: the same weights shipped to start each chunk from the reference instead.
    from rtavatar.engine import Avatar

    ref, mot = export_checkpoint(tmp_path / "eft", tmp_path / "ref", prior="reference"), export_checkpoint(tmp_path / "eft", tmp_path / "mot")
    assert load_bundle(ref).cfg.sampling.prior == "reference" and load_bundle(mot).cfg.sampling.prior == cfg.prior == "motion"
    # The fine-tuned model ships the MotionNet of the model it started from (the run itself carries none).
    assert tuned.motion is None and load_bundle(mot).motion is not None and load_bundle(mot).motion.cfg.hidden == 16
    face = Dataset(data).load(0).frames[0]
    speech = (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 150)).astype(np.float32)
    a, b = (Avatar.load(d).generate(face, speech, align="center").astype(int) for d in (ref, mot))
    assert a.shape == b.shape and np.abs(a - b).max() > 0, "the prior changes what later chunks start from"
    with pytest.raises(ValueError, match="unknown EFT prior"):
        export_checkpoint(tmp_path / "eft", tmp_path / "bad", prior="noise")


def test_smile_counterfactual_and_partner_audio(data_and_vae: tuple[Path, Path], student_run: Path, tmp_path: Path) -> None:
    """The smile loss is zero when the counterfactual smile is the clip's own control and
    positive (with gradients into the student) for another; a run with it logs it and needs a
    width-head expert; with partner_audio the input is own + partner audio, and without it the
    batches are exactly those of before (no random draw added)."""
    from rtavatar.checkpoints import export_checkpoint, load_bundle
    from rtavatar.evaluation.sync import load_expert
    from rtavatar.models.syncnet import SyncNetConfig
    from rtavatar.training.data import LatentClips
    from rtavatar.training.eft import SMILE, smile_loss, student_of_export
    from rtavatar.training.syncnet import SyncStageConfig, train_syncnet
    from rtavatar.training.teacher import MouthAperture

    data, _ = data_and_vae
    export = export_checkpoint(student_run, tmp_path / "export")
    tiny = TrainConfig(steps=2, batch_size=4, ckpt_every=2)
    plain, shaped = tmp_path / "plain", tmp_path / "shaped"
    train_syncnet(SyncStageConfig(net=SyncNetConfig(width=8, dim=16), train=tiny), data, plain)
    train_syncnet(SyncStageConfig(net=SyncNetConfig(width=8, dim=16, width_head=True), train=tiny), data, shaped)

    bundle = load_bundle(export)
    tcfg = student_of_export(EFTConfig().student, bundle).teacher
    net, codec = bundle.net.float().requires_grad_(True), bundle.codec
    reader = MouthAperture(codec, load_expert(shaped).net)
    clips = LatentClips(Dataset(data, split="train"), codec, tmp_path / "cache")
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    raw = clips.sample(gen(), 2, 4, tcfg.net.audio_margin)
    assert torch.equal(raw["audio"], clips.sample(gen(), 2, 4, tcfg.net.audio_margin, partner_p=0.0)["audio"])
    assert raw["width_parts"].shape == (2, 4, 3) and not raw["width_parts"].isnan().any(), "synthetic clips have the parts"
    clips.partner = [torch.zeros_like(a) for a in clips.audio]
    silent = clips.sample(gen(), 2, 4, tcfg.net.audio_margin, partner_p=1.0)
    clips.partner = [torch.full_like(a, 0.25) for a in clips.audio]
    mixed = clips.sample(gen(), 2, 4, tcfg.net.audio_margin, partner_p=1.0)
    m = tcfg.net.audio_margin * 640  # the margins may lie outside the clip (zero padding)
    assert torch.allclose(mixed["audio"][:, m:-m], silent["audio"][:, m:-m] + 0.25), "own track + the other speaker's"

    batch = {**model_batch(tcfg, raw), "ref_model": to_model_space(tcfg, raw["ref"][:, None], raw["ref"])[:, 0]}
    cfg = EFTConfig()
    motion = 1
    x = edit_start(cfg, batch["latents"][:, :motion], batch["ref_model"], torch.randn(batch["latents"].shape, generator=gen()))
    t = torch.full(x.shape[:2], cfg.t_edit)
    t[:, :motion] = 0.0
    base = dict(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"])
    guidance = torch.full((2,), cfg.student.default_guidance)
    f = consistency_denoiser(v_denoiser(lambda x_, tt, c: net(x_, tt, c, wav=batch["audio"])))
    pred = f(x, t, Conditioning(**base, guidance=guidance))
    own = batch["controls"][:, motion:, SMILE].mean(1)  # smiles change over seconds: ~constant in 4 frames
    assert torch.allclose(batch["controls"][:, motion:, SMILE], own[:, None], atol=0.05)
    same = float(smile_loss(reader, tcfg, f, x, t, base, guidance, pred, batch, own, motion).detach())
    other = smile_loss(reader, tcfg, f, x, t, base, guidance, pred, batch, own + 0.8, motion)
    assert same < 0.5 * float(other.detach()), (same, float(other.detach()))
    other.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters()), "the counterfactual trains the student"

    train = TrainConfig(steps=2, batch_size=2, lr=1e-7, warmup=1, ema=0.9, ckpt_every=2, log_every=1)
    with pytest.raises(ValueError, match="no width head"):
        train_eft(EFTConfig(init_pretrained=str(export), adversarial=False, smile_weight=1.0, width_expert=str(plain), train=train),
                  data, tmp_path / "bad")
    train_eft(EFTConfig(init_pretrained=str(export), adversarial=False, smile_weight=1.0, width_expert=str(shaped),
                        partner_audio=0.5, train=train), data, tmp_path / "eft")
    assert '"smile"' in (tmp_path / "eft" / "log.jsonl").read_text(), "the smile loss took part"
