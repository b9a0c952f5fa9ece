"""Diffusion core: noise schedule, v-parameterization, guidance, and samplers.

Schedule (variance preserving, cosine): for t in [0, 1] (0 = clean),
    alpha(t) = cos(pi t / 2),  sigma(t) = sin(pi t / 2),  x_t = alpha x0 + sigma eps.
The network predicts v = alpha eps - sigma x0 (Salimans & Ho 2022), so
    x0_hat = alpha x_t - sigma v,   eps_hat = sigma x_t + alpha v.
We clip t to [0, T_MAX] so sigma/alpha stays finite at the noisy end.

Every sampler is a small pure function over one interface, k-diffusion style:
    denoise(x, t, cond) -> x0_hat       with x (B, F, C, H, W), t (B, F)
    sampler(denoise, x, active, cond, steps=, t_start=, generator=) -> x0
Frames with t = 0 (motion frames, clean context) pass through unchanged.

Where sampling starts is chosen in one place, `start_latents`: pure noise at T_MAX, or (EFT)
the prior video noised to t_edit; it returns the t_start the sampler must then be given.
A `SamplingConfig` names the whole choice: "teacher 20 DDIM steps with CFG", "student 1-4
consistency steps", "EFT student from the prior at t_edit" are values, not code paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor

T_MAX = 0.999
Denoiser = Callable[[Tensor, Tensor, object], Tensor]


def alpha_sigma(t: Tensor) -> tuple[Tensor, Tensor]:
    t = t.clamp(0.0, T_MAX)
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


def _bcast(a: Tensor, x: Tensor) -> Tensor:
    """(B, F) -> (B, F, 1, 1, 1) to broadcast against latents."""
    return a.reshape(*a.shape, *([1] * (x.dim() - a.dim())))


def add_noise(x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    a, s = alpha_sigma(t)
    return _bcast(a, x0) * x0 + _bcast(s, x0) * eps


def v_target(x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    a, s = alpha_sigma(t)
    return _bcast(a, x0) * eps - _bcast(s, x0) * x0


def x0_from_v(x_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    a, s = alpha_sigma(t)
    return _bcast(a, x_t) * x_t - _bcast(s, x_t) * v


def eps_from_x0(x_t: Tensor, x0: Tensor, t: Tensor) -> Tensor:
    a, s = alpha_sigma(t)
    return (x_t - _bcast(a, x_t) * x0) / _bcast(s, x_t).clamp_min(1e-4)


class VModel(Protocol):
    def __call__(self, x: Tensor, t: Tensor, cond: object) -> Tensor: ...


def v_denoiser(model: VModel) -> Denoiser:
    """Wrap a v-predicting network as `denoise(x, t, cond) -> x0_hat`."""

    def denoise(x: Tensor, t: Tensor, cond: object) -> Tensor:
        return x0_from_v(x, model(x, t, cond), t)

    return denoise


def cfg_denoiser(denoise: Denoiser, uncond: object, scale: float) -> Denoiser:
    """Classifier-free guidance: x0 = x0_u + w (x0_c - x0_u) (w = 1: no guidance).

    `uncond` is the conditioning with the guided inputs dropped (audio, or audio + reference).
    """
    if scale == 1.0:
        return denoise

    def guided(x: Tensor, t: Tensor, cond: object) -> Tensor:
        x0_c, x0_u = denoise(x, t, cond), denoise(x, t, uncond)
        return x0_u + scale * (x0_c - x0_u)

    return guided


def timesteps(steps: int, t_start: float = T_MAX) -> Tensor:
    """Uniform grid t_start -> 0 with `steps` intervals."""
    return torch.linspace(t_start, 0.0, steps + 1)


def _frame_times(t: float, active: Tensor) -> Tensor:
    """Noise level per frame: `t` on frames being generated, 0 on clean context frames."""
    return active.float() * t


def sample_ddim(denoise: Denoiser, x: Tensor, active: Tensor, cond: object, steps: int = 20, t_start: float = T_MAX,
                generator: torch.Generator | None = None) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0): x_s = alpha_s x0_hat + sigma_s eps_hat.

    x: (B, F, C, H, W) with pure noise (at t_start) on active frames and clean latents elsewhere;
    active: (B, F) bool, the frames to generate.
    """
    grid = timesteps(steps, t_start)
    for t_now, t_next in zip(grid[:-1], grid[1:]):
        t = _frame_times(float(t_now), active)
        x_new = ddim_step(x, denoise(x, t, cond), t, _frame_times(float(t_next), active))
        x = torch.where(_bcast(active, x), x_new, x)
    return x


def ddim_step(x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """One deterministic DDIM move from t to s < t given x0_hat: x_s = alpha_s x0 + sigma_s eps_hat.
    Also the teacher's (skipping-step) ODE solver in consistency distillation."""
    a, sg = alpha_sigma(s)
    return _bcast(a, x_t) * x0 + _bcast(sg, x_t) * eps_from_x0(x_t, x0, t)


# Consistency parameterization (Song et al. 2023; LCM): f(x, t) = c_skip(t) x + c_out(t) x0_hat.
# c_skip(0) = 1 and c_out(0) = 0, so f(x, 0) = x exactly (the boundary condition); the
# scale makes the switch-over happen within t ~ 0.01, i.e. f is the network's x0 nearly
# everywhere else.
SIGMA_DATA = 0.5
BOUNDARY_SCALE = 100.0


def consistency_coeffs(t: Tensor) -> tuple[Tensor, Tensor]:
    st = t * BOUNDARY_SCALE
    return SIGMA_DATA**2 / (st**2 + SIGMA_DATA**2), st / torch.sqrt(st**2 + SIGMA_DATA**2)


def consistency_denoiser(denoise: Denoiser) -> Denoiser:
    """The consistency function f(x, t, cond) of a network wrapped as `denoise` (-> x0_hat)."""

    def f(x: Tensor, t: Tensor, cond: object) -> Tensor:
        c_skip, c_out = consistency_coeffs(t)
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * denoise(x, t, cond)

    return f


def sample_consistency(f: Denoiser, x: Tensor, active: Tensor, cond: object, steps: int = 1, t_start: float = T_MAX,
                       generator: torch.Generator | None = None) -> Tensor:
    """Multistep consistency sampling (1, 2, 4, ... steps): x0 = f(x_T, T); then re-noise x0 to
    the next, lower t with fresh noise and apply f again."""
    grid = torch.linspace(t_start, 0.0, steps + 1)[:-1]
    x0 = x
    for i, t_now in enumerate(grid):
        t = _frame_times(float(t_now), active)
        if i:
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)  # CPU RNG: same on every device
            x = torch.where(_bcast(active, x), add_noise(x0, eps, t), x)
        x0 = torch.where(_bcast(active, x), f(x, t, cond), x)
    return x0


def sample_euler(denoise: Denoiser, x: Tensor, active: Tensor, cond: object, steps: int = 20, t_start: float = T_MAX,
                 generator: torch.Generator | None = None) -> Tensor:
    """Euler on the probability-flow ODE in (alpha, sigma) form (Karras et al. 2022, Alg. 1
    without the Heun correction): dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat."""
    grid = timesteps(steps, t_start)
    for t_now, t_next in zip(grid[:-1], grid[1:]):
        t = _frame_times(float(t_now), active)
        x0 = denoise(x, t, cond)
        eps = eps_from_x0(x, x0, t)
        a, s = alpha_sigma(t)
        half_pi = 0.5 * math.pi
        dx = _bcast(-half_pi * s, x) * x0 + _bcast(half_pi * a, x) * eps
        x_new = x + (float(t_next) - float(t_now)) * dx
        x = torch.where(_bcast(active, x), x_new, x)
    return x


def sample_consistency_x0(denoise: Denoiser, x: Tensor, active: Tensor, cond: object, steps: int = 1, t_start: float = T_MAX,
                          generator: torch.Generator | None = None) -> Tensor:
    """`sample_consistency` over an x0-denoiser (wrapped as the consistency function)."""
    return sample_consistency(consistency_denoiser(denoise), x, active, cond, steps=steps, t_start=t_start, generator=generator)


# Every entry: (denoise, x, active, cond, steps=, t_start=, generator=) -> x0 on active frames.
SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": sample_ddim, "euler": sample_euler, "consistency": sample_consistency_x0}
STARTS = ("noise", "prior")
PRIORS = ("motion", "reference")


@dataclass
class SamplingConfig:
    """How a checkpoint samples by default (each field can be overridden per call)."""

    sampler: str = "ddim"  # a SAMPLERS name
    steps: int = 20
    guidance: float = 2.0  # CFG scale on audio (teacher), or the scale fed to a student
    guidance_input: bool = False  # True: the network takes the scale as an input (distilled); no CFG passes
    start: str = "noise"  # "noise": pure noise at T_MAX; "prior": the EFT prior video noised to t_edit
    t_edit: float = T_MAX
    prior: str = "motion"  # EFT prior: "motion" (last context frame, reference without one) or "reference"

    def validate(self) -> "SamplingConfig":
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; use {', '.join(SAMPLERS)}")
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; use {' or '.join(STARTS)}")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown EFT prior {self.prior!r}; use {' or '.join(PRIORS)}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not math.isfinite(self.guidance) or not 0.0 <= self.guidance <= 20.0:
            raise ValueError(f"guidance must be a finite number in [0, 20], got {self.guidance!r}")
        if not 0.0 < self.t_edit <= T_MAX:
            raise ValueError(f"t_edit must be in (0, {T_MAX}], got {self.t_edit!r}")
        return self


def edit_prior(kind: str, context: Tensor, ref_model: Tensor, new: int) -> Tensor:
    """(B, new, C, h, w) EFT prior video in model space: the last context frame, or the
    reference (ref_model, (B, C, h, w), the reference latent in model space), repeated."""
    if kind not in PRIORS:
        raise ValueError(f"unknown EFT prior {kind!r}; use {' or '.join(PRIORS)}")
    last = context[:, -1] if kind == "motion" and context.shape[1] else ref_model
    return last[:, None].expand(-1, new, *last.shape[1:])


def start_latents(cfg: SamplingConfig, context: Tensor, ref_model: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, float]:
    """The clip sampling starts from: (x, active, t_start).

    context: (B, k, ...) clean context latents; eps: (B, k + new, ...) noise (its first k
    frames are unused). New frames start as eps (start "noise", t_start = T_MAX) or as the
    prior noised to t_edit (start "prior"); t_start is what the sampler must be given."""
    k, new = context.shape[1], eps.shape[1] - context.shape[1]
    if cfg.start == "prior":
        t_start = cfg.t_edit
        t = torch.full((eps.shape[0], new), t_start, device=eps.device)
        fresh = add_noise(edit_prior(cfg.prior, context, ref_model, new), eps[:, k:], t)
    else:
        t_start, fresh = T_MAX, eps[:, k:]
    x = torch.cat([context, fresh], 1)
    active = torch.zeros(eps.shape[:2], dtype=torch.bool, device=eps.device)
    active[:, k:] = True
    return x, active, t_start
