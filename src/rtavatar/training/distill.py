"""Stage `distill`: latent consistency distillation of the teacher into a 1-4 step student.

Per step (Song et al. 2023; Luo et al. 2023, LCM), on the teacher's own data pipeline:

1. draw a grid index n on the discretised schedule t_0 = 0 < ... < t_N = T_MAX and a guidance
   scale w ~ U[guidance_min, guidance_max]; noise the new frames to t = t_n;
2. the frozen teacher takes one skipping-step DDIM move t_n -> s = t_{n-skip} with
   classifier-free guidance on audio at scale w: x0_w = x0_u + w (x0_c - x0_u);
3. the student, conditioned on w through its (zero-initialised) guidance embedding, maps
   (x_t, t) to f(x_t, t) = c_skip(t) x_t + c_out(t) x0_hat, and the target network (the EMA of
   the student, decay train.ema) maps (x_s, s) to its f; f(x, 0) = x by construction;
4. loss = pseudo-Huber(f_student(x_t, t) - f_target(x_s, s)) on the new frames.

With `adversarial`, the avatar discriminator (models/discriminator.py: a lip-audio head and a
motion head on the frozen teacher's features, or on the sync expert's) judges the student's x0 estimate against the
real clip, and its generator loss is added with `adv_weight` (hinge losses, one backward).

The student starts as a copy of the teacher's EMA weights. Sampling: `sample_consistency`
with 1, 2 or 4 steps and no CFG passes (the guidance is baked in).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rtavatar.checkpoints import (InferenceConfig, absolute, check_run_dir, checkpoint_weights, latest_checkpoint, load_weights, read_run_config,
                                  student_inference, write_inference_files)
from rtavatar.config import from_dict, to_dict
from rtavatar.data.dataset import Dataset
from rtavatar.diffusion import T_MAX, add_noise, consistency_denoiser, ddim_step, v_denoiser
from rtavatar.models.avatarnet import AvatarNet
from rtavatar.models.discriminator import AvatarDiscriminator, Backbone, DiscConfig, ExpertBackbone, TeacherBackbone, adversarial_term
from rtavatar.models.dit import Conditioning
from rtavatar.models.vae import VAEConfig
from rtavatar.training.common import TrainConfig, on_device, rank_slice, train_loop
from rtavatar.training.data import LatentClips
from rtavatar.training.teacher import TeacherConfig, from_model_space, load_codec, model_batch

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    teacher_checkpoint: str = ""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)  # copied from the teacher run at first start
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=4000, batch_size=8, lr=5e-5, warmup=50, ema=0.95))
    n_timesteps: int = 50  # the discretised schedule the teacher solver walks
    skip: int = 1  # the solver jumps t_{n+skip} -> t_n
    guidance_min: float = 1.0
    guidance_max: float = 3.0
    huber_c: float = 0.001
    default_guidance: float = 2.0  # what generation conditions the student on unless told otherwise
    adversarial: bool = False
    adv_weight: float = 0.1
    disc: DiscConfig = field(default_factory=DiscConfig)
    # Warm start: a distill run whose student (EMA) initialises a *new* run instead of the
    # teacher, so ablations (with / without the discriminator) branch off one shared
    # distillation. Ignored when --resume finds a checkpoint.
    init_from: str = ""

    def inference(self, vae: VAEConfig) -> InferenceConfig:
        """What a checkpoint of this student needs to run (inference.json)."""
        return student_inference(self.teacher.inference(vae), self.default_guidance)


class StudentAndDisc(nn.Module):
    """The student and (optionally) the avatar discriminator, trained in one optimizer step.
    The discriminator's heads start from scratch beside a student that starts trained, so
    they get their own learning rate (`disc.lr_mult` x the student's)."""

    def __init__(self, student: AvatarNet, disc: AvatarDiscriminator | None = None) -> None:
        super().__init__()
        self.student, self.disc = student, disc

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """AdamW parameter groups (train_loop uses them when a model has this method)."""
        groups: list[dict[str, Any]] = [{"params": list(self.student.parameters())}]
        if self.disc is not None:
            groups.append({"params": list(self.disc.parameters()), "lr": lr * self.disc.cfg.lr_mult})
        return groups


class Distiller(StudentAndDisc):
    """What distillation trains. Its forward is the whole loss, so DDP sees one forward per
    step; its EMA copy is the target network."""

    def forward(self, target: "Distiller", teacher: nn.Module, backbone: Backbone | None, cfg: "DistillConfig",
                batch: dict[str, Tensor], noise: dict[str, Tensor], motion: int) -> tuple[Tensor, dict[str, float]]:
        loss, pred, stats = distill_loss(self.student, target.student, teacher, cfg, batch, noise, motion)
        if self.disc is not None and backbone is not None:
            base = Conditioning(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"])
            adv, adv_stats = adversarial_term(self.disc, backbone, batch["latents"], pred, motion, base, batch["audio"], noise,
                                              cfg.adv_weight)
            loss = loss + adv
            stats.update(adv_stats)
        return loss, stats


def pseudo_huber(d: Tensor, c: float) -> Tensor:
    """sqrt(d^2 + c^2) - c per sample and frame, averaged over the latent."""
    return (torch.sqrt(d.pow(2).flatten(2).mean(-1) + c * c) - c)


def load_student(net: AvatarNet, checkpoint: Path, ema: bool = True) -> None:
    """Load the student out of a distill checkpoint (weights saved under `student.`)."""
    sd = checkpoint_weights(checkpoint, ema)
    net.load_state_dict({k.removeprefix("student."): v for k, v in sd.items() if k.startswith("student.")})


def load_distill_run(checkpoint: str | Path) -> tuple[DistillConfig, AvatarNet, Path]:
    ck, stage, raw = read_run_config(checkpoint)
    if stage != "distill":
        raise ValueError(f"{ck} is not a distill checkpoint (a `train distill` run)")
    cfg = from_dict(DistillConfig, raw)
    net = AvatarNet(cfg.teacher.net)
    load_student(net, ck, ema=True)
    return cfg, net, ck


def build_discriminator(cfg: DiscConfig, tcfg: TeacherConfig, teacher: AvatarNet | None = None,
                        teacher_checkpoint: str | Path = "", codec: nn.Module | None = None) -> tuple[AvatarDiscriminator, Backbone]:
    """The avatar discriminator's heads on the backbone `cfg.backbone` names (the frozen
    teacher, or the sync expert on mouths decoded with the teacher's VAE). The teacher
    backbone uses `teacher`, else loads it from `teacher_checkpoint` (frozen); the expert
    backbone uses `codec` (the stage's VAE, already loaded), else loads the teacher's VAE."""
    if cfg.backbone == "teacher":
        if teacher is None:
            if not teacher_checkpoint:
                raise ValueError("the teacher backbone needs the teacher")
            _, teacher = load_teacher_run(teacher_checkpoint)
            teacher.eval().requires_grad_(False)
        backbone: Backbone = TeacherBackbone(teacher, cfg.layers)
    elif cfg.backbone == "expert":
        if not cfg.expert_checkpoint:
            raise ValueError("disc.backbone 'expert' needs disc.expert_checkpoint (a `train syncnet` run)")
        from rtavatar.evaluation.sync import load_expert

        backbone = ExpertBackbone(load_expert(cfg.expert_checkpoint).net,
                                  codec if codec is not None else load_codec(tcfg.vae_checkpoint),
                                  lambda x, ref: from_model_space(tcfg, x, ref / tcfg.latent_scale), tcfg.net.audio_margin)
    else:
        raise ValueError(f"unknown discriminator backbone {cfg.backbone!r}; use 'teacher' or 'expert'")
    return AvatarDiscriminator.on(cfg, backbone), backbone


def load_teacher_run(checkpoint: str | Path) -> tuple[TeacherConfig, AvatarNet]:
    ck, stage, raw = read_run_config(checkpoint)
    if stage != "teacher":
        raise ValueError(f"{ck} is not a teacher checkpoint (distillation starts from `train teacher`)")
    cfg = from_dict(TeacherConfig, raw)
    net = AvatarNet(cfg.net)
    load_weights(net, ck, ema=True)
    return cfg, net


def distill_loss(student: nn.Module, target: nn.Module, teacher: nn.Module, cfg: DistillConfig, batch: dict[str, Tensor],
                 noise: dict[str, Tensor], motion: int) -> tuple[Tensor, Tensor, dict[str, float]]:
    """One consistency-distillation loss on a model-space batch (see the module docstring);
    also returns the student's x0 estimate f(x_t, t) for the discriminator."""
    x0, eps, w = batch["latents"], noise["eps"], noise["w"]
    grid = torch.linspace(0.0, T_MAX, cfg.n_timesteps + 1, device=x0.device)
    b, f = x0.shape[:2]
    t = grid[noise["n"]][:, None].expand(b, f).clone()
    s = grid[noise["n"] - cfg.skip][:, None].expand(b, f).clone()
    t[:, :motion] = s[:, :motion] = noise["t_motion"]  # clean-ish context frames stay put
    x_t = add_noise(x0, eps, t)
    base = dict(state=batch["state"], controls=batch["controls"], ref_latent=batch["ref"])
    wav = batch["audio"]
    with torch.no_grad():
        audio = teacher.audio_tokens(wav, f)  # once for both CFG passes
        teach = v_denoiser(lambda x, tt, c: teacher(x, tt, c))
        x0_c = teach(x_t, t, Conditioning(**base, audio=audio))
        x0_u = teach(x_t, t, Conditioning(**base, audio=audio, keep_audio=torch.zeros(b, dtype=torch.bool, device=x0.device)))
        x0_w = x0_u + w.reshape(b, 1, 1, 1, 1) * (x0_c - x0_u)
        x_s = ddim_step(x_t, x0_w, t, s)
        x_s[:, :motion] = x_t[:, :motion]
        f_target = consistency_denoiser(v_denoiser(lambda x, tt, c: target(x, tt, c, wav=wav)))
        y = f_target(x_s, s, Conditioning(**base, guidance=w))
    f_student = consistency_denoiser(v_denoiser(lambda x, tt, c: student(x, tt, c, wav=wav)))
    pred = f_student(x_t, t, Conditioning(**base, guidance=w))
    loss = pseudo_huber(pred - y, cfg.huber_c)[:, motion:].mean()
    with torch.no_grad():
        err = float((pred.detach() - x0)[:, motion:].pow(2).mean())
    return loss, pred, {"x0_mse": err}


def draw_distill_noise(cfg: DistillConfig, shape: torch.Size, motion: int, gen: torch.Generator) -> dict[str, Tensor]:
    b = shape[0]
    d = cfg.disc
    return {"eps": torch.randn(shape, generator=gen),
            "n": torch.randint(cfg.skip, cfg.n_timesteps + 1, (b,), generator=gen),
            "w": cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(b, generator=gen),
            "t_motion": torch.rand(b, motion, generator=gen) * cfg.teacher.motion_noise,
            "eps_d": torch.randn(shape, generator=gen), "t_d": d.t_min + (d.t_max - d.t_min) * torch.rand(b, generator=gen)}


def train_distill(cfg: DistillConfig, data: str | Path, run: str | Path, resume: bool = False, overwrite: bool = False,
                  stop_after: int | None = None) -> dict[str, Any]:
    check_run_dir(Path(run), resume, overwrite)  # before any work: never reuse a run silently
    if not cfg.teacher_checkpoint:
        raise ValueError("distillation needs teacher_checkpoint (a `train teacher` run)")
    if cfg.train.ema <= 0:
        raise ValueError("distillation needs train.ema > 0: the EMA of the student is the target network")
    run = Path(run)
    cfg.teacher_checkpoint, cfg.init_from = absolute(cfg.teacher_checkpoint), absolute(cfg.init_from)
    cfg.disc.expert_checkpoint = absolute(cfg.disc.expert_checkpoint)
    tcfg, teacher = load_teacher_run(cfg.teacher_checkpoint)
    cfg.teacher = tcfg
    teacher.eval().requires_grad_(False)
    student = AvatarNet(tcfg.net)
    student.load_state_dict(teacher.state_dict())
    if cfg.init_from and not (resume and latest_checkpoint(run) is not None):
        src_cfg, src, ck = load_distill_run(cfg.init_from)
        if src_cfg.teacher.net != tcfg.net:
            raise ValueError(f"{ck} distilled a teacher of another architecture than {cfg.teacher_checkpoint}")
        student.load_state_dict(src.state_dict())
        log.info("student warm-started from %s", ck)
    codec = load_codec(cfg.teacher_checkpoint)  # the VAE the teacher checkpoint carries (older ones: its vae_checkpoint)
    disc, backbone = build_discriminator(cfg.disc, tcfg, teacher, codec=codec) if cfg.adversarial else (None, None)
    clips = LatentClips(Dataset(data, split="train"), codec, run / "latent_cache")

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int, world: int,
                ema: nn.Module) -> tuple[Tensor, dict[str, float]]:
        new = int(torch.randint(1, tcfg.max_new + 1, (1,), generator=gen))
        motion = int(torch.randint(0, tcfg.max_motion + 1, (1,), generator=gen))
        batch = model_batch(tcfg, clips.sample(gen, cfg.train.batch_size, motion + new, tcfg.net.audio_margin))
        drawn = draw_distill_noise(cfg, batch["latents"].shape, motion, noise)
        mine = rank_slice(cfg.train.batch_size, rank, world)
        device = next(model.parameters()).device
        teacher.to(device)  # frozen, outside what accelerate moves
        if backbone is not None:
            backbone.to(device)
        loss, scalars = model(ema, teacher, backbone, cfg, on_device({k: v[mine] for k, v in batch.items()}, model),
                              on_device({k: v[mine] for k, v in drawn.items()}, model), motion)
        return loss, {**scalars, "new": new, "motion": motion}

    icfg = cfg.inference(codec.cfg)
    return train_loop(run=run, cfg=cfg.train, model=Distiller(student, disc), config_dict={"stage": "distill", **to_dict(cfg)},
                      loss_fn=loss_fn, resume=resume, stop_after=stop_after, loss_needs_ema=True,
                      write_extra=lambda d: write_inference_files(d, icfg, codec))
