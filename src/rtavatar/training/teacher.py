"""Stage `teacher`: the multi-step diffusion model (v-prediction) in the VAE's latent space.

Per step: one clip length (1..max_new new frames) and one motion-frame count (0..max_motion)
for the whole batch; motion frames are clean context, lightly noised (noise augmentation
keeps long streams stable) and conditioned on their own small t; CFG dropout of audio,
reference, state and controls per sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rtavatar.checkpoints import (InferenceConfig, absolute, check_run_dir, checkpoint_weights, latest_checkpoint, load_codec, resolve_checkpoint,
                                  teacher_inference, write_inference_files)
from rtavatar.config import to_dict
from rtavatar.data.dataset import Dataset
from rtavatar.diffusion import add_noise, v_target, x0_from_v
from rtavatar.models.avatarnet import AvatarNet, AvatarNetConfig
from rtavatar.models.dit import Conditioning
from rtavatar.models.space import LatentSpace
from rtavatar.models.syncnet import SyncNet, decode_mouth
from rtavatar.models.vae import LatentCodec, VAEConfig
from rtavatar.training.common import TrainConfig, on_device, rank_slice, train_loop
from rtavatar.training.data import LatentClips

log = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    net: AvatarNetConfig = field(default_factory=AvatarNetConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20000, batch_size=8, lr=3e-4, warmup=200))
    vae_checkpoint: str = ""
    max_new: int = 8
    max_motion: int = 2
    motion_noise: float = 0.1  # max t of noise augmentation on motion frames
    p_drop_audio: float = 0.1
    p_drop_ref: float = 0.05
    p_drop_state: float = 0.1
    p_drop_controls: float = 0.1
    latent_scale: float = 0.0  # 1 / latent std, measured on the training latents at first start
    # Diffuse each frame's difference from the reference latent instead of the latent itself.
    # The zero-initialised output layer then starts out as "copy the reference", so training
    # spends its steps on motion (lips, eyes, pose) instead of first learning to reproduce the
    # identity through attention (measured: an absolute-latent tiny teacher still predicted x0
    # worse than a plain copy of the reference after 2,500 steps; see docs/BENCHMARKS.md).
    residual: bool = True
    residual_scale: float = 0.0  # 1 / std of (latent - reference latent), measured at first start
    # Warm start: a teacher run/checkpoint whose weights initialise a *new* run (matching
    # names; new modules keep their init). Ignored when --resume finds a checkpoint.
    init_from: str = ""
    sample_every: int = 1000  # steps between sample videos (0: never)
    sample_seconds: float = 3.0
    sample_steps: int = 20
    # The mouth is ~3% of an aligned face crop, so an unweighted loss learns lips last. Inside
    # this box (y0, y1, x0, x1 as fractions of the crop; it covers the mouth of the synthetic
    # framing over the whole pose range, and of `rtavatar prepare` crops) the loss counts
    # mouth_weight times. 1.0 turns it off.
    mouth_weight: float = 1.0
    mouth_box: tuple[float, float, float, float] = (0.5, 0.75, 0.25, 0.75)
    # Auxiliary mouth-opening loss (in the spirit of Wav2Lip's / LatentSync's sync-expert loss):
    # the predicted x0 is decoded around the mouth and the frozen sync expert's aperture tower
    # reads its opening, which must match the opening it reads from the true frame. Given pose,
    # identity and motion frames only the audio says how far the mouth is open, so this is a
    # loss only the audio path can lower. Why: the mouth opening explains 7.8% of the within-clip
    # mouth-box latent variance (linear R²; pose dominates), so under the plain MSE a tiny teacher
    # learned pose and ignored audio for 7,900 CPU steps (docs/BENCHMARKS.md). 0 turns it off; sync_expert is
    # a `train syncnet` run. The loss is in (0.1 IOD)^2 units, about 1 for an average mouth.
    aperture_weight: float = 0.0
    sync_expert: str = ""

    @property
    def space(self) -> LatentSpace:
        return LatentSpace(self.residual, self.latent_scale, self.residual_scale)

    def inference(self, vae: VAEConfig) -> InferenceConfig:
        """What a checkpoint of this teacher needs to run (inference.json)."""
        return teacher_inference(to_dict(self), vae)


def draw_noise(cfg: TeacherConfig, shape: torch.Size, motion: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """All of a step's randomness for the *global* batch (sliced per rank like the data)."""
    b, f = shape[:2]
    t = torch.rand(b, 1, generator=gen).expand(b, f).clone()
    t[:, :motion] = torch.rand(b, motion, generator=gen) * cfg.motion_noise
    keep = lambda p: torch.rand(b, generator=gen) >= p  # noqa: E731
    return {"eps": torch.randn(shape, generator=gen), "t": t, "keep_audio": keep(cfg.p_drop_audio),
            "keep_ref": keep(cfg.p_drop_ref), "keep_state": keep(cfg.p_drop_state), "keep_controls": keep(cfg.p_drop_controls)}


def to_model_space(cfg: TeacherConfig, z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """VAE latents (B, F, C, h, w) -> the space the diffusion runs in (models/space.py)."""
    return cfg.space.to_model(z, ref)


def from_model_space(cfg: TeacherConfig, y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Inverse of to_model_space."""
    return cfg.space.from_model(y, ref)


def model_batch(cfg: TeacherConfig, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LatentClips batch with latents in model space and the reference input scaled."""
    return {**batch, "latents": to_model_space(cfg, batch["latents"], batch["ref"]), "ref": batch["ref"] * cfg.latent_scale}


def region_weight(cfg: TeacherConfig, h: int, w: int) -> torch.Tensor:
    """(h, w) loss weights with mean 1: mouth_weight inside mouth_box, 1 elsewhere."""
    y0, y1, x0, x1 = cfg.mouth_box
    wt = torch.ones(h, w)  # callers move it with .to(x)
    wt[round(y0 * h): round(y1 * h), round(x0 * w): round(x1 * w)] = cfg.mouth_weight
    return wt / wt.mean()


class MouthAperture(nn.Module):
    """Frozen VAE decoder + the sync expert's aperture (and width) tower, on the mouth region of latents."""

    def __init__(self, codec: LatentCodec, expert: SyncNet, margin: int = 3) -> None:
        super().__init__()
        self.codec, self.expert, self.margin = codec, expert, margin
        self.requires_grad_(False).eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(..., C, h, w) raw VAE latents -> (...) mouth opening in IOD."""
        return self.expert.mouth_open(decode_mouth(self.codec, z, self.expert.cfg, self.margin))

    def width(self, z: torch.Tensor) -> torch.Tensor:
        """(..., C, h, w) raw VAE latents -> (...) log mouth width (up to a per-face constant)."""
        return self.expert.mouth_width(decode_mouth(self.codec, z, self.expert.cfg, self.margin))


def load_aperture(cfg: TeacherConfig, codec: LatentCodec) -> MouthAperture | None:
    if cfg.aperture_weight <= 0:
        return None
    if not cfg.sync_expert:
        raise ValueError("aperture_weight > 0 needs sync_expert (a run of `rtavatar train syncnet`)")
    from rtavatar.evaluation.sync import load_expert

    return MouthAperture(codec, load_expert(cfg.sync_expert).net)


def teacher_loss(net: nn.Module, cfg: TeacherConfig, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], motion: int,
                 aperture: MouthAperture | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """v-prediction MSE on the new frames (latents already scaled), mouth region weighted, plus
    the aperture loss when `aperture` is given. Returns (loss, logged parts)."""
    x0, eps, t = batch["latents"], noise["eps"], noise["t"]
    state = batch["state"].clone()
    state[~noise["keep_state"]] = cfg.net.dit.n_states
    cond = Conditioning(state=state, controls=batch["controls"], ref_latent=batch["ref"], keep_audio=noise["keep_audio"],
                        keep_ref=noise["keep_ref"], keep_controls=noise["keep_controls"])
    xt = add_noise(x0, eps, t)
    v = net(xt, t, cond, wav=batch["audio"])
    se = ((v - v_target(x0, eps, t)) ** 2)[:, motion:]
    if cfg.mouth_weight != 1.0:
        se = se * region_weight(cfg, *se.shape[-2:]).to(se)
    loss = se.mean()
    if aperture is None:
        return loss, {}
    # Where the audio was dropped (CFG) nothing can say how open the mouth is: no loss there.
    ap = aperture_loss(aperture, cfg, x0_from_v(xt, v, t)[:, motion:], x0[:, motion:], batch["ref"], noise["keep_audio"])
    return loss + cfg.aperture_weight * ap, {"mse": float(loss.detach()), "aperture": float(ap.detach())}


def aperture_loss(aperture: MouthAperture, cfg: TeacherConfig, pred: torch.Tensor, x0: torch.Tensor, ref_latent: torch.Tensor,
                  keep: torch.Tensor | None = None) -> torch.Tensor:
    """Squared difference, in 0.1 IOD units, of the mouth opening the sync expert reads from the
    predicted and the true new frames (both (B, F, C, h, w) in model space; ref_latent is the
    scaled reference latent of the batch). Samples with keep False count for nothing."""
    ref = ref_latent / cfg.latent_scale
    with torch.no_grad():
        target = aperture(from_model_space(cfg, x0, ref))
    opened = aperture(from_model_space(cfg, pred, ref))
    keep_ = (torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device) if keep is None else keep).to(opened)[:, None]
    return (((opened - target) / 0.1) ** 2 * keep_).sum() / (keep_.sum() * opened.shape[1]).clamp(min=1)


def warm_start(net: nn.Module, checkpoint: str | Path) -> None:
    """Load the EMA (else raw) weights of another run wherever names and shapes match."""
    ck = resolve_checkpoint(checkpoint)
    own = net.state_dict()
    found = {k: v for k, v in checkpoint_weights(ck, ema=True).items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(found, strict=False)
    log.info("warm start from %s: %d of %d tensors loaded; new: %s", ck, len(found), len(own),
             ", ".join(sorted({k.rsplit(".", 1)[0] for k in own if k not in found})) or "none")


def train_teacher(cfg: TeacherConfig, data: str | Path, run: str | Path, resume: bool = False, overwrite: bool = False,
                  stop_after: int | None = None) -> dict[str, Any]:
    check_run_dir(Path(run), resume, overwrite)  # before any work: never reuse a run silently
    run = Path(run)
    if not cfg.vae_checkpoint:
        raise ValueError("teacher training needs vae_checkpoint (a run of `rtavatar train vae`)")
    cfg.vae_checkpoint, cfg.sync_expert, cfg.init_from = map(absolute, (cfg.vae_checkpoint, cfg.sync_expert, cfg.init_from))
    codec = load_codec(cfg.vae_checkpoint)
    clips = LatentClips(Dataset(data, split="train"), codec, run / "latent_cache")
    if cfg.latent_scale <= 0:
        cfg.latent_scale = 1.0 / max(clips.latent_std(), 1e-6)
    if cfg.residual and cfg.residual_scale <= 0:
        cfg.residual_scale = 1.0 / max(clips.residual_std(), 1e-6)
    torch.manual_seed(cfg.train.seed)
    net = AvatarNet(cfg.net)
    aperture = load_aperture(cfg, codec)
    if cfg.init_from and not (resume and latest_checkpoint(run) is not None):
        warm_start(net, cfg.init_from)

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int,
                world: int) -> tuple[torch.Tensor, dict[str, float]]:
        new = int(torch.randint(1, cfg.max_new + 1, (1,), generator=gen))
        motion = int(torch.randint(0, cfg.max_motion + 1, (1,), generator=gen))
        batch = clips.sample(gen, cfg.train.batch_size, motion + new, cfg.net.audio_margin)
        drawn = draw_noise(cfg, batch["latents"].shape, motion, noise)
        mine = rank_slice(cfg.train.batch_size, rank, world)
        batch = on_device({k: v[mine] for k, v in batch.items()}, model)
        drawn = on_device({k: v[mine] for k, v in drawn.items()}, model)
        batch = model_batch(cfg, batch)
        loss, parts = teacher_loss(model, cfg, batch, drawn, motion, aperture.to(batch["latents"].device) if aperture else None)
        return loss, {"new": new, "motion": motion, **parts}

    sample_clip = Dataset(data).load(0)  # the same clip every time, so samples are comparable

    def on_checkpoint(model: nn.Module, step: int) -> None:
        if cfg.sample_every and step % cfg.sample_every == 0:
            write_sample(run / "samples", step, cfg, model, codec, sample_clip)

    icfg = cfg.inference(codec.cfg)
    return train_loop(run=run, cfg=cfg.train, model=net, config_dict={"stage": "teacher", **to_dict(cfg)},
                      loss_fn=loss_fn, resume=resume, stop_after=stop_after, on_checkpoint=on_checkpoint,
                      write_extra=lambda d: write_inference_files(d, icfg, codec))


def write_sample(out_dir: Path, step: int, cfg: TeacherConfig, net: nn.Module, codec: LatentCodec, clip) -> Path:  # noqa: ANN001
    """Generate from the clip's first frame and audio; write an mp4 (generated | ground truth)
    and a PNG strip of every 5th frame (top: generated, bottom: ground truth)."""
    import numpy as np
    from PIL import Image

    from rtavatar import FPS, SAMPLES_PER_FRAME
    from rtavatar.checkpoints import Bundle
    from rtavatar.engine import Avatar
    from rtavatar.media import write_video

    n = min(clip.n_frames, int(cfg.sample_seconds * FPS))
    audio = clip.audio[: n * SAMPLES_PER_FRAME]
    was_training = net.training
    avatar = Avatar(Bundle(cfg.inference(codec.cfg), net.eval(), codec), device=next(net.parameters()).device)
    frames = avatar.generate(clip.frames[0], audio, align="center", steps=cfg.sample_steps)
    net.train(was_training)
    truth = clip.frames[:n]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"step_{step:07d}.mp4"
    write_video(path, np.concatenate([frames, truth], axis=2), audio)
    idx = list(range(0, n, 5))
    strip = np.concatenate([np.concatenate([frames[i] for i in idx], 1), np.concatenate([truth[i] for i in idx], 1)], 0)
    Image.fromarray(strip).save(path.with_suffix(".png"))
    return path
