"""Offline generation: portrait + audio -> mp4 with a trained model (`rtavatar generate`).

Chunked over any audio length: the first chunk has no motion frames; every later chunk
carries the last `motion` generated latents as clean context, so chunks join smoothly.
Audio features are computed once for the whole file (offline: no look-ahead limit applies);
the streaming engine (a later issue) encodes incrementally instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.config import from_dict
from rtavatar.data.behavior import CONTROLS, STATE_ID
from rtavatar.diffusion import SAMPLERS, T_MAX, cfg_denoiser, consistency_denoiser, sample_consistency, v_denoiser
from rtavatar.errors import RTAvatarError
from rtavatar.media import read_audio, read_image, validate_audio, write_video
from rtavatar.models.avatarnet import AvatarNet
from rtavatar.models.dit import Conditioning
from rtavatar.models.vae import LatentCodec
from rtavatar.training.common import load_weights, read_run_config
from rtavatar.training.data import CONTROL_SCALE
from rtavatar.training.eft import edit_start
from rtavatar.training.teacher import TeacherConfig, from_model_space, load_codec, to_model_space

log = logging.getLogger(__name__)


@dataclass
class Model:
    """A trained denoiser with its VAE and the settings it was trained with."""

    cfg: TeacherConfig
    net: AvatarNet
    codec: LatentCodec
    student: Any = None  # the DistillConfig of a distilled (consistency) student, else None
    edit: Any = None  # the EFTConfig of an editing-fine-tuned student: sampling starts from the noised prior

    @property
    def resolution(self) -> int:
        return self.cfg.net.dit.latent_size * 8


def load_model(checkpoint: str | Path, ema: bool = True) -> Model:
    ck, stage, raw = read_run_config(checkpoint)
    edit = None
    if stage == "teacher":
        cfg, student = from_dict(TeacherConfig, raw), None
    elif stage == "distill":
        from rtavatar.training.distill import DistillConfig

        student = from_dict(DistillConfig, raw)
        cfg = student.teacher
    elif stage == "eft":
        from rtavatar.training.eft import EFTConfig

        edit = from_dict(EFTConfig, raw)
        student, cfg = edit.student, edit.student.teacher
    else:
        raise RTAvatarError(f"checkpoint {ck} is a {stage!r} checkpoint; generate needs a teacher, distill or eft run")
    net = AvatarNet(cfg.net)
    if student is None:
        load_weights(net, ck, ema=ema)
    else:
        from rtavatar.training.distill import load_student

        load_student(net, ck, ema=ema)
    return Model(cfg, net.eval().requires_grad_(False), load_codec(cfg.vae_checkpoint), student, edit)


def prepare_portrait(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre square crop + resize to the model's resolution (face alignment comes with `prepare`)."""
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    x = torch.from_numpy(np.ascontiguousarray(image[y0 : y0 + s, x0 : x0 + s])).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(resolution, resolution), mode="area" if s > resolution else "bilinear", align_corners=None if s > resolution else False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def parse_expression(text: str | None) -> dict[str, float]:
    """'smile=0.5,yaw=10' -> {'smile': 0.5, 'yaw': 10.0} (names from docs/DATA.md)."""
    out: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, val = part.partition("=")
        key = key.strip()
        if key not in CONTROLS:
            raise RTAvatarError(f"unknown expression control {key!r}; use {', '.join(CONTROLS)}")
        try:
            out[key] = float(val)
        except ValueError as e:
            raise RTAvatarError(f"expression {key}: {val!r} is not a number") from e
    return out


NEUTRAL = {"smile": 0.1, "brow_raise": 0.0, "eye_open_l": 1.0, "eye_open_r": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0}


def frame_states(audio: np.ndarray, n_frames: int, state: str) -> np.ndarray:
    """Per-frame state: fixed, or 'auto' = speak where the frame has speech energy, else idle."""
    if state != "auto":
        if state not in STATE_ID:
            raise RTAvatarError(f"unknown state {state!r}; use auto, {', '.join(STATE_ID)}")
        return np.full(n_frames, STATE_ID[state], np.int64)
    rms = np.sqrt((audio[: n_frames * SAMPLES_PER_FRAME].reshape(n_frames, -1) ** 2).mean(1))
    voiced = rms > max(0.01, 0.1 * float(np.percentile(rms, 95)))
    # Hold speech through short pauses (< 0.4 s) so the state does not flicker.
    held = np.convolve(voiced.astype(float), np.ones(10), mode="same") > 0
    return np.where(held, STATE_ID["speak"], STATE_ID["idle"]).astype(np.int64)


@torch.no_grad()
def generate_latents(
    model: Model,
    portrait: np.ndarray,
    audio: np.ndarray,
    *,
    steps: int | None = None,
    sampler: str = "ddim",
    guidance: float | None = None,
    state: str = "auto",
    expression: dict[str, float] | None = None,
    first_chunk: int = 4,
    chunk: int | None = None,
    motion: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """VAE latents (N, C, h, w) for `audio` (16 kHz mono), N = ceil(len(audio) / 640).

    A teacher samples with `sampler` (DDIM) in `steps` (default 20) with CFG on audio at
    `guidance` (default 2); a distilled student samples with the consistency sampler in
    `steps` (default 1), its guidance scale fed to the network (default: its training's).
    """
    cfg, net = model.cfg, model.net
    student = model.student
    chunk = chunk or cfg.max_new
    motion = cfg.max_motion if motion is None else motion
    n = max(1, int(np.ceil(len(audio) / SAMPLES_PER_FRAME)))
    audio = np.pad(audio, (0, n * SAMPLES_PER_FRAME - len(audio)))
    m = cfg.net.audio_margin
    dev = next(net.parameters()).device  # inputs and noise are made on the CPU, then moved
    wav = torch.from_numpy(np.pad(audio, (m * SAMPLES_PER_FRAME, m * SAMPLES_PER_FRAME)))[None].to(dev)
    tokens = net.audio_tokens(wav, n)  # (1, n, 2W+1, D), encoded once for the whole file
    states = torch.from_numpy(frame_states(audio, n, state))[None].to(dev)
    ctrl = np.array([{**NEUTRAL, **(expression or {})}[k] for k in CONTROLS], np.float32) * CONTROL_SCALE
    controls = torch.from_numpy(ctrl)[None, None].expand(1, n, -1).to(dev)

    codec_dev = next(model.codec.parameters()).device
    ref_raw = model.codec.encode(LatentCodec.to_tensor(prepare_portrait(portrait, model.resolution)[None]).to(codec_dev)).to(dev)
    ref_cache = net.dit.encode_reference(ref_raw * cfg.latent_scale)  # once per avatar
    ref_model = to_model_space(cfg, ref_raw[:, None], ref_raw)[:, 0]
    denoise = v_denoiser(lambda x, t, c: net.dit(x, t, c))
    gen = torch.Generator().manual_seed(seed)
    if student is not None:
        steps, guidance = steps or 1, student.default_guidance if guidance is None else guidance
        f = consistency_denoiser(denoise)
        g = torch.tensor([guidance], device=dev)
        t_start = model.edit.t_edit if model.edit is not None else T_MAX
        sample = lambda x, active, cond, uncond: sample_consistency(  # noqa: E731
            f, x, active, Conditioning(**{**cond.__dict__, "guidance": g}), steps=steps, t_start=t_start, generator=gen)
    else:
        steps, guidance = steps or 20, 2.0 if guidance is None else guidance
        sample = lambda x, active, cond, uncond: SAMPLERS[sampler](  # noqa: E731
            cfg_denoiser(denoise, uncond, guidance), x, active, cond, steps=steps)
    c_shape = (cfg.net.dit.latent_channels, cfg.net.dit.latent_size, cfg.net.dit.latent_size)

    out: list[torch.Tensor] = []
    done = 0
    bar = tqdm(total=n, desc="generate", unit="frame", disable=not progress)
    while done < n:
        new = min(first_chunk if done == 0 else chunk, n - done)
        ctx = torch.stack(out[-motion:])[None] if motion and out else torch.zeros(1, 0, *c_shape, device=dev)
        k = ctx.shape[1]
        sl = slice(done - k, done + new)
        x = torch.cat([ctx, torch.randn(1, new, *c_shape, generator=gen).to(dev)], 1)
        if model.edit is not None:  # EFT: start from the prior video noised to t_edit, as in training
            x = edit_start(model.edit, ctx, ref_model, x)
        active = torch.tensor([[False] * k + [True] * new], device=dev)
        cond = Conditioning(audio=tokens[:, sl], state=states[:, sl], controls=controls[:, sl], ref_cache=ref_cache)
        uncond = Conditioning(audio=None, state=states[:, sl], controls=controls[:, sl], ref_cache=ref_cache)  # CFG on audio
        x = sample(x, active, cond, uncond)
        out.extend(x[0, k:].unbind(0))
        done += new
        bar.update(new)
    bar.close()
    return from_model_space(cfg, torch.stack(out)[None], ref_raw)[0]


@torch.no_grad()
def generate(model: Model, portrait: np.ndarray, audio: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Frames (N, R, R, 3) uint8 for `audio` (16 kHz mono): generate_latents, then the VAE decoder."""
    z = generate_latents(model, portrait, audio, **kwargs).to(next(model.codec.parameters()).device)
    return LatentCodec.to_uint8(torch.cat([model.codec.decode(z[i : i + 16]) for i in range(0, len(z), 16)]))


def generate_file(checkpoint: str | Path, image: str | Path, audio_path: str | Path, out: str | Path, *, steps: int | None = None,
                  state: str = "auto", expression: str | None = None, guidance: float | None = None, seed: int = 0) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = load_model(checkpoint)
    portrait = read_image(image)
    audio = validate_audio(read_audio(audio_path), 16_000, name=str(audio_path))
    t1 = time.perf_counter()
    frames = generate(model, portrait, audio, steps=steps, guidance=guidance, state=state, expression=parse_expression(expression), seed=seed)
    t2 = time.perf_counter()
    n = write_video(out, frames, audio, fps=FPS)
    return {"out": str(out), "frames": n, "seconds": round(n / FPS, 2), "steps": steps,
            "generate_seconds": round(t2 - t1, 2), "fps": round(n / max(t2 - t1, 1e-9), 2), "total_seconds": round(time.perf_counter() - t0, 2)}
