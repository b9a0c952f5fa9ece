"""Stage `eft`: editing fine-tuning of the one-step student (`rtavatar train eft`).

What it does. A distilled student maps pure noise at t = T to a clip in one step, so that one
step has to invent everything: pose, colour, identity detail and the mouth. In a talking-head
stream almost all of that is already known: it is the previous frame (or, on the first chunk,
the reference). EFT changes the start: the new frames begin as the *prior video* -- the last
motion frame (the reference when a chunk has no motion frames), repeated over the chunk --
noised to `t_edit` < T, and the student is fine-tuned to turn that start into the real target
chunk in one step:

    x_start = alpha(t_edit) prior + sigma(t_edit) eps
    loss    = pseudo-Huber(f_student(x_start, t_edit) - x0_real)   (mouth region weighted)
            + adv_weight * the avatar discriminator's generator loss (optional)
            + aperture_weight * the sync expert's mouth-opening loss (optional, as the teacher's)
            + smile_weight * the smile loss (optional, below)

Generation then uses exactly the same start (engine/core.py), so training and inference see the
same inputs. Why it helps: the low frequencies the student used to guess (and got wrong from
chunk to chunk, i.e. flicker) now come from the prior, and the one step only has to *edit*
what changes -- lips, eyes, small head motion. The regression target is real data, not the
teacher, so EFT can also correct what distillation lost.

Two options teach the controls that the prior otherwise makes unnecessary (the prior already
holds the last frame's smile, so copying it is nearly free):
- `partner_audio`: the fraction of clips whose audio input also carries the other speaker;
  their listen frames are shut in the data, so the state, not the audio, has to decide.
- `smile_weight`: a counterfactual. The same start is generated a second time with the smile
  control set to a random value; a sync expert with a width head (SyncNetConfig.width_head)
  reads both mouths, and the change in log width must match what the renderer's formula
  (data.face.width_factor) gives for that change of smile. No pixel target is needed.

EFT starts from a distill run, or (`init_pretrained`) from an exported model such as the
shipped one: fine-tuning a model without its training runs (the network, latent space and VAE
come from the export; the loss settings from `student.teacher` of the config).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rtavatar.checkpoints import (Bundle, InferenceConfig, absolute, check_run_dir, load_bundle, pretrained_path, student_inference,
                                  student_sampling, write_inference_files)
from rtavatar.config import to_dict
from rtavatar.data.dataset import Dataset
from rtavatar.errors import RTAvatarError
from rtavatar.diffusion import PRIORS, SamplingConfig, consistency_denoiser, edit_prior, start_latents, v_denoiser  # noqa: F401 (edit_prior re-exported)
from rtavatar.data.face import width_factor
from rtavatar.models.conditioning import CONTROL_SCALE, CONTROLS
from rtavatar.models.discriminator import Backbone, DiscConfig, adversarial_term
from rtavatar.models.dit import Conditioning
from rtavatar.models.vae import VAEConfig
from rtavatar.training.common import TrainConfig, on_device, rank_slice, train_loop
from rtavatar.training.data import LatentClips
from rtavatar.training.distill import DistillConfig, StudentAndDisc, build_discriminator, load_distill_run, pseudo_huber
from rtavatar.training.teacher import (MouthAperture, TeacherConfig, aperture_loss, from_model_space, load_aperture, load_codec,
                                      model_batch, region_weight, to_model_space)

log = logging.getLogger(__name__)


@dataclass
class EFTConfig:
    distill_checkpoint: str = ""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=4, lr=3e-5, warmup=50, ema=0.99))
    t_edit: float = 0.6  # noise level of the start; 1.0 would be plain one-step sampling from noise
    prior: str = "motion"  # "motion": last motion frame (reference without one); "reference": always the reference
    huber_c: float = 0.001
    adversarial: bool = True
    adv_weight: float = 0.1
    disc: DiscConfig = field(default_factory=DiscConfig)
    student: DistillConfig = field(default_factory=DistillConfig)  # filled from the distill run
    # An exported model to fine-tune instead of a distill run: a shipped name ("photo-v8") or an
    # `rtavatar export` directory. Its net, latent space, guidance and VAE replace those of `student`.
    init_pretrained: str = ""
    # The teacher's mouth-opening loss (TeacherConfig.aperture_weight), on the one-step estimate.
    aperture_weight: float = 0.0
    sync_expert: str = ""
    partner_audio: float = 0.0  # probability a clip's audio input includes the other speaker's track
    smile_weight: float = 0.0  # the counterfactual smile loss (module docstring)
    width_expert: str = ""  # a sync expert run with net.width_head; needed when smile_weight > 0

    @property
    def sampling(self) -> SamplingConfig:
        """EFT's start is generation's: one step from the prior noised to t_edit."""
        return student_sampling(self.student.default_guidance, self.t_edit, self.prior)

    def inference(self, vae: VAEConfig) -> InferenceConfig:
        """What a checkpoint of this student needs to run (inference.json): it samples from the prior at t_edit."""
        return student_inference(self.student.teacher.inference(vae), self.student.default_guidance, "eft", self.t_edit,
                                 self.prior)


def edit_start(cfg: EFTConfig, context: Tensor, ref_model: Tensor, eps: Tensor) -> Tensor:
    """The clip the student starts from: context frames clean, new frames = prior noised to t_edit
    (diffusion.start_latents, the same start generation uses)."""
    return start_latents(cfg.sampling, context, ref_model, eps)[0]


def student_of_export(base: DistillConfig, bundle: Bundle) -> DistillConfig:
    """`base` with the network, latent space, chunk sizes and guidance of an exported model."""
    c = bundle.cfg
    teacher = replace(base.teacher, net=c.net, max_new=c.max_new, max_motion=c.max_motion, residual=c.space.residual,
                      latent_scale=c.space.latent_scale, residual_scale=c.space.residual_scale)
    return replace(base, teacher=teacher, default_guidance=c.sampling.guidance)


def _export_dir(name_or_path: str) -> Path:
    p = Path(name_or_path)
    return p.resolve() if p.exists() else pretrained_path(name_or_path)


def is_export(name_or_path: str) -> bool:
    """A shipped model's name, or a directory `rtavatar export` wrote (not a training run)."""
    p = Path(name_or_path)
    if not p.exists():
        try:
            return pretrained_path(name_or_path).is_dir()
        except RTAvatarError:
            return False
    try:
        return "exported_from" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False


class Editor(StudentAndDisc):
    """What EFT trains; forward is the whole loss."""

    def forward(self, cfg: EFTConfig, backbone: Backbone | None, batch: dict[str, Tensor], noise: dict[str, Tensor],
                motion: int, aperture: MouthAperture | None = None, reader: MouthAperture | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        tcfg = cfg.student.teacher
        x0, wav = batch["latents"], batch["audio"]
        b, f = x0.shape[:2]
        x = edit_start(cfg, x0[:, :motion], batch["ref_model"], noise["eps"])
        t = torch.full((b, f), cfg.t_edit, device=x0.device)
        t[:, :motion] = 0.0
        base = dict(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"])
        guidance = torch.full((b,), cfg.student.default_guidance, device=x0.device)
        f_student = consistency_denoiser(v_denoiser(lambda x_, tt, c: self.student(x_, tt, c, wav=wav)))
        pred = f_student(x, t, Conditioning(**base, guidance=guidance))
        d = (pred - x0)[:, motion:]
        if tcfg.mouth_weight != 1.0:
            d = d * region_weight(tcfg, *d.shape[-2:]).to(d).sqrt()
        loss = pseudo_huber(d, cfg.huber_c).mean()
        with torch.no_grad():
            stats = {"x0_mse": float((pred - x0)[:, motion:].pow(2).mean()),
                     "prior_mse": float((x[:, motion:] - x0[:, motion:]).pow(2).mean())}
        if aperture is not None:
            ap = aperture_loss(aperture, tcfg, pred[:, motion:], x0[:, motion:], batch["ref"])
            loss = loss + cfg.aperture_weight * ap
            stats["aperture"] = float(ap.detach())
        if reader is not None:
            sm = smile_loss(reader, tcfg, f_student, x, t, base, guidance, pred, batch, noise["smile"], motion)
            loss = loss + cfg.smile_weight * sm
            stats["smile"] = float(sm.detach())
        if self.disc is not None and backbone is not None:
            adv, adv_stats = adversarial_term(self.disc, backbone, x0, pred, motion, Conditioning(**base), wav, noise, cfg.adv_weight)
            loss = loss + adv
            stats.update(adv_stats)
        return loss, stats


SMILE = CONTROLS.index("smile")
SMILE_RANGE = (-0.5, 1.0)  # the drawn smile's range in the data (data.behavior)


def smile_loss(reader: MouthAperture, tcfg: TeacherConfig, f_student: Any, x: Tensor, t: Tensor, base: dict[str, Tensor],
               guidance: Tensor, pred: Tensor, batch: dict[str, Tensor], smile: Tensor, motion: int) -> Tensor:
    """Generate the same start again with the smile control set to `smile` (B,) and ask the
    change of the mouth's log width (read by `reader`) to be the renderer's for that change.
    The first pass's width is the fixed point (no gradient); frames without synthetic width
    parts count for nothing. Squared error in units of 0.03 (a 3 % width change)."""
    parts = batch["width_parts"][:, motion:]
    mw, mr, drawn = parts.unbind(-1)
    ctl = base["controls"].clone()
    bias = drawn - ctl[:, motion:, SMILE] / float(CONTROL_SCALE[SMILE])  # state bias + behaviour, per frame
    ctl[:, :, SMILE] = smile[:, None] * float(CONTROL_SCALE[SMILE])
    drawn_cf = (smile[:, None] + bias).clamp(*SMILE_RANGE)
    want = torch.log(width_factor(mw, mr, drawn_cf) / width_factor(mw, mr, drawn))
    pred_cf = f_student(x, t, Conditioning(**{**base, "controls": ctl}, guidance=guidance))
    ref = batch["ref"] / tcfg.latent_scale
    with torch.no_grad():
        w0 = reader.width(from_model_space(tcfg, pred[:, motion:], ref))
    w1 = reader.width(from_model_space(tcfg, pred_cf[:, motion:], ref))
    ok = ~torch.isnan(want)
    if not ok.any():
        return w1.sum() * 0.0
    return (((w1 - w0 - want) / 0.03)[ok] ** 2).mean()


def train_eft(cfg: EFTConfig, data: str | Path, run: str | Path, resume: bool = False, overwrite: bool = False,
              stop_after: int | None = None) -> dict[str, Any]:
    check_run_dir(Path(run), resume, overwrite)  # before any work: never reuse a run silently
    if bool(cfg.distill_checkpoint) == bool(cfg.init_pretrained):
        raise ValueError("EFT needs one of distill_checkpoint (a `train distill` run) or init_pretrained (an exported model)")
    run = Path(run)
    cfg.distill_checkpoint, cfg.disc.expert_checkpoint, cfg.sync_expert, cfg.width_expert = map(
        absolute, (cfg.distill_checkpoint, cfg.disc.expert_checkpoint, cfg.sync_expert, cfg.width_expert))
    if cfg.init_pretrained:
        if cfg.adversarial and cfg.disc.backbone == "teacher":
            raise ValueError("an exported model carries no teacher: use disc.backbone 'expert' or adversarial: false")
        cfg.init_pretrained = str(_export_dir(cfg.init_pretrained))
        bundle = load_bundle(cfg.init_pretrained)
        sp = bundle.cfg.sampling
        if sp.start == "prior" and (sp.t_edit, sp.prior) != (cfg.t_edit, cfg.prior):
            log.warning("the export starts from the %s prior at t_edit %.2f; this run trains (and exports) %s at %.2f",
                        sp.prior, sp.t_edit, cfg.prior, cfg.t_edit)
        cfg.student = student_of_export(cfg.student, bundle)
        student, codec = bundle.net.float().train().requires_grad_(True), bundle.codec
    else:
        cfg.student, student, _ = load_distill_run(cfg.distill_checkpoint)
        codec = load_codec(cfg.distill_checkpoint)  # the VAE the student checkpoint carries
    tcfg = cfg.student.teacher
    aperture = load_aperture(replace(tcfg, aperture_weight=cfg.aperture_weight, sync_expert=cfg.sync_expert), codec)
    reader = None
    if cfg.smile_weight > 0:
        if not cfg.width_expert:
            raise ValueError("smile_weight > 0 needs width_expert (a `train syncnet` run with net.width_head: true)")
        from rtavatar.evaluation.sync import load_expert

        expert = load_expert(cfg.width_expert).net
        if expert.width_tower is None:
            raise ValueError(f"{cfg.width_expert}: this sync expert has no width head (net.width_head: true)")
        reader = MouthAperture(codec, expert)
    disc, backbone = (build_discriminator(cfg.disc, tcfg, teacher_checkpoint=cfg.student.teacher_checkpoint, codec=codec)
                      if cfg.adversarial else (None, None))
    clips = LatentClips(Dataset(data, split="train"), codec, run / "latent_cache")

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int,
                world: int) -> tuple[Tensor, dict[str, float]]:
        new = int(torch.randint(1, tcfg.max_new + 1, (1,), generator=gen))
        motion = int(torch.randint(0, tcfg.max_motion + 1, (1,), generator=gen))
        raw = clips.sample(gen, cfg.train.batch_size, motion + new, tcfg.net.audio_margin, cfg.partner_audio)
        batch = {**model_batch(tcfg, raw), "ref_model": to_model_space(tcfg, raw["ref"][:, None], raw["ref"])[:, 0]}
        shape, b = batch["latents"].shape, cfg.train.batch_size
        drawn = {"eps": torch.randn(shape, generator=noise), "eps_d": torch.randn(shape, generator=noise),
                 "t_d": cfg.disc.t_min + (cfg.disc.t_max - cfg.disc.t_min) * torch.rand(b, generator=noise)}
        if reader is not None:  # drawn only then: runs without the smile loss keep their random stream
            drawn["smile"] = SMILE_RANGE[0] + (SMILE_RANGE[1] - SMILE_RANGE[0]) * torch.rand(b, generator=noise)
        mine = rank_slice(b, rank, world)
        device = next(model.parameters()).device
        for frozen in (backbone, aperture, reader):  # outside what accelerate moves
            if frozen is not None:
                frozen.to(device)
        loss, scalars = model(cfg, backbone, on_device({k: v[mine] for k, v in batch.items()}, model),
                              on_device({k: v[mine] for k, v in drawn.items()}, model), motion, aperture, reader)
        return loss, {**scalars, "new": new, "motion": motion}

    icfg = cfg.inference(codec.cfg)
    return train_loop(run=run, cfg=cfg.train, model=Editor(student, disc), config_dict={"stage": "eft", **to_dict(cfg)},
                      loss_fn=loss_fn, resume=resume, stop_after=stop_after,
                      write_extra=lambda d: write_inference_files(d, icfg, codec))
