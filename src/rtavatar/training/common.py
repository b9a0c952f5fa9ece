"""What every training stage shares: checkpoints, EMA, the loop, logging.

Determinism: a step's global batch and noise are pure functions of (seed, step); each rank
takes its slice of the global batch. So `--resume` continues exactly (only weights, EMA,
optimizer and the step counter need saving), and N processes at batch B/N match one
process at batch B.

Checkpoints: `RUN/checkpoints/step_XXXXXXX/` with `model.safetensors` (+ `ema.safetensors`),
`config.json` and `state.pt` (optimizer + step, read with `torch.load(weights_only=True)`,
which refuses arbitrary pickled objects). Written into a temp directory and renamed, so a
kill mid-write never leaves a half checkpoint; `RUN/checkpoints/latest` names the newest.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from rtavatar.checkpoints import check_run_dir, latest_checkpoint, load_weights, verify_checkpoint, write_manifest
from rtavatar.training.sharding import (OPTIMIZER_FORMAT, full_model_state, full_optimizer_state, full_tensor,
                                        load_full_optimizer_state, shard_model)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings shared by every stage (each stage adds its own)."""

    steps: int = 1000
    batch_size: int = 8  # global batch (split across processes)
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    ema: float = 0.999  # 0 disables EMA
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    decay_from: int = 0  # > 0: cosine-decay the lr from this step to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1
    fsdp: bool = False  # shard weights/grads/optimizer over processes (training/sharding.py) instead of DDP

    def validate(self) -> "TrainConfig":
        """Refuse values that would train nonsense or crash late (non-finite, out of range)."""
        from rtavatar.errors import RTAvatarError

        finite = lambda x: isinstance(x, (int, float)) and math.isfinite(x)  # noqa: E731
        checks = [(isinstance(self.steps, int) and self.steps >= 1, f"steps must be an integer >= 1, got {self.steps!r}"),
                  (isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size!r}"),
                  (finite(self.lr) and self.lr >= 0, f"lr must be a finite number >= 0, got {self.lr!r}"),
                  (finite(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
                  (isinstance(self.warmup, int) and self.warmup >= 0, f"warmup must be >= 0, got {self.warmup!r}"),
                  (finite(self.grad_clip) and self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip!r}"),
                  (finite(self.ema) and 0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema!r}"),
                  (isinstance(self.log_every, int) and self.log_every >= 1, f"log_every must be >= 1, got {self.log_every!r}"),
                  (isinstance(self.ckpt_every, int) and self.ckpt_every >= 1, f"ckpt_every must be >= 1, got {self.ckpt_every!r}"),
                  (isinstance(self.keep_checkpoints, int) and self.keep_checkpoints >= 0,
                   f"keep_checkpoints must be >= 0 (0: keep all), got {self.keep_checkpoints!r}"),
                  (self.mixed_precision in ("no", "bf16", "fp16"), f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}"),
                  (isinstance(self.decay_from, int) and self.decay_from >= 0, f"decay_from must be >= 0, got {self.decay_from!r}"),
                  (finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")]
        for ok, msg in checks:
            if not ok:
                raise RTAvatarError(f"train: {msg}")
        return self


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The RNG for one step's global batch (stream 0) or noise (stream 1)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63))


def on_device(batch: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Move a batch (drawn on the CPU, so it is the same on every machine) to the model's device."""
    device = next(model.parameters()).device
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def rank_slice(n: int, rank: int, world: int) -> slice:
    if n % world:
        raise ValueError(f"global batch {n} does not split evenly over {world} processes")
    k = n // world
    return slice(rank * k, (rank + 1) * k)


class EMA:
    """Exponential moving average of a model's weights (kept as a frozen copy)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # Warm-up: early on the average would be dominated by the (zero-output) initial weights,
        # so samples taken from it would show nothing for thousands of steps.
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(full_tensor(p.detach()), 1.0 - decay)  # FSDP: gather the shards (the copy is unsharded)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def _cpu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(run: Path, step: int, model: nn.Module | dict[str, Tensor], config: dict[str, Any],
                    optimizer: torch.optim.Optimizer | dict[str, Any] | None, ema: EMA | None = None, keep: int = 2,
                    extra: dict[str, Any] | None = None, write_extra: Callable[[Path], None] | None = None) -> Path:
    """model / optimizer: the objects, or their already-gathered state dicts (FSDP; the
    optimizer's then in the name-keyed format, marked in state.pt). write_extra(dir) adds
    files to the checkpoint before it is renamed into place (the inference bundle)."""
    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:07d}"
    tmp = ckdir / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_cpu(model if isinstance(model, dict) else model.state_dict()), tmp / "model.safetensors")
    if ema is not None:
        save_file(_cpu(ema.model.state_dict()), tmp / "ema.safetensors")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    state: dict[str, Any] = {"step": step, "extra": extra or {}}
    if isinstance(optimizer, dict):
        state["optimizer"], state["optimizer_format"] = optimizer, OPTIMIZER_FORMAT
    elif optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, tmp / "state.pt")
    if write_extra is not None:
        write_extra(tmp)
    write_manifest(tmp)
    verify_checkpoint(tmp)  # read back before it replaces anything
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = ckdir / f".latest.{os.getpid()}"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, ckdir / "latest")
    old = sorted(p for p in ckdir.glob("step_*") if p.is_dir())
    for p in old[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then constant, or a cosine decay from `decay_from` to the last step."""

    def f(step: int) -> float:
        w = min(1.0, (step + 1) / max(1, cfg.warmup))
        if cfg.decay_from <= 0 or step < cfg.decay_from:
            return w
        frac = min(1.0, (step - cfg.decay_from) / max(1, cfg.steps - cfg.decay_from))
        return w * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    return f


class JsonlLogger:
    """Scalars as JSON lines (one per logged step) in RUN/log.jsonl."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")


def train_loop(
    *,
    run: Path,
    cfg: TrainConfig,
    model: nn.Module,
    config_dict: dict[str, Any],
    loss_fn: Callable[[nn.Module, int, torch.Generator, torch.Generator, int, int], tuple[Tensor, dict[str, float]]],
    resume: bool,
    on_checkpoint: Callable[[nn.Module, int], None] | None = None,
    stop_after: int | None = None,
    loss_needs_ema: bool = False,
    write_extra: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Run `cfg.steps` optimisation steps with accelerate (1 or N processes).

    loss_fn(model, step, batch_gen, noise_gen, rank, world) -> (loss, scalars); it draws the
    global batch from batch_gen and keeps its rank's slice.
    stop_after: stop (after checkpointing) once this many steps ran in this call (tests use
    it to simulate a kill).
    loss_needs_ema: pass the EMA model to loss_fn as `ema=` (consistency distillation uses
    the EMA of the student as its target network, saved and resumed with the run).
    write_extra: adds files to every checkpoint (save_checkpoint).
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # Some parameters legitimately get no gradient in a step (the guidance embedding in the
    # teacher, null tokens when nothing is dropped), so DDP must look for unused ones.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp])
    cfg.validate()
    check_run_dir(run, resume)
    run.mkdir(parents=True, exist_ok=True)
    sharded = cfg.fsdp and acc.num_processes > 1
    if sharded and cfg.mixed_precision == "fp16":
        raise ValueError("fsdp trains in fp32 or bf16 (mixed_precision: bf16); fp16 would need a sharded grad scaler")
    ck = latest_checkpoint(run) if resume else None
    if ck is not None:
        load_weights(model, ck)  # full weights, before sharding splits them
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None:
        if ck is not None:
            load_weights(ema.model, ck, ema=True)
        ema.model.to(acc.device)
    if sharded:
        model.to(acc.device)
        shard_model(model)
    params = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else model.parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if ck is not None:
        state = load_state(ck)
        if state.get("optimizer_format") == OPTIMIZER_FORMAT:
            load_full_optimizer_state(model, opt, state["optimizer"])
        elif sharded:
            raise ValueError(f"{ck} was saved without fsdp; resume it with train.fsdp: false")
        else:
            opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resumed %s from step %d", run, start)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg), last_epoch=start - 1 if start else -1)
    if start:
        for g in opt.param_groups:  # LambdaLR(last_epoch=...) expects initial_lr; recompute lr for this step
            g["lr"] = g["initial_lr"] * lr_lambda(cfg)(start)
    # FSDP shards the model itself; accelerate then only supplies the processes and autocast
    # (so fsdp takes bf16, not fp16: no grad scaler).
    if sharded:
        pmodel = model
    else:
        pmodel, opt = acc.prepare(model, opt)
    logger = JsonlLogger(run / "log.jsonl", acc.is_main_process)
    if start and acc.is_main_process and logger.path.is_file():
        # Steps logged after the checkpoint we resumed from will be redone: drop them.
        kept = [r for r in iter_logged(run) if r["step"] <= start]
        logger.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    rank, world = acc.process_index, acc.num_processes
    t0, ran, done = time.perf_counter(), 0, start
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", disable=not acc.is_main_process)
    for step in bar:
        pmodel.train()
        with acc.autocast():
            extra = {"ema": ema.model} if loss_needs_ema and ema is not None else {}
            loss, scalars = loss_fn(pmodel, step, step_generator(cfg.seed, step, 0), step_generator(cfg.seed, step, 1), rank, world,
                                    **extra)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.grad_clip <= 0:
            grad_norm = torch.tensor(0.0)
        elif sharded:
            grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(pmodel.parameters(), cfg.grad_clip))
        else:
            grad_norm = acc.clip_grad_norm_(pmodel.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(acc.unwrap_model(pmodel), step)
        ran += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss_all = acc.reduce(loss.detach(), reduction="mean").item()
            rec = {"step": done, "loss": loss_all, "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm),
                   "sec_per_step": (time.perf_counter() - t0) / ran, **scalars}
            logger.write(rec)
            bar.set_postfix(loss=f"{loss_all:.4f}")
        last = done == cfg.steps or (stop_after is not None and ran >= stop_after)
        if done % cfg.ckpt_every == 0 or last:
            acc.wait_for_everyone()
            weights, opt_state = (full_model_state(pmodel), full_optimizer_state(pmodel, opt)) if sharded else (
                acc.unwrap_model(pmodel), opt)
            if acc.is_main_process:
                save_checkpoint(run, done, weights, config_dict, opt_state, ema, cfg.keep_checkpoints, write_extra=write_extra)
                if on_checkpoint is not None and (ema is not None or not sharded):
                    on_checkpoint(ema.model if ema is not None else acc.unwrap_model(pmodel), done)
            acc.wait_for_everyone()
        if last:
            break
    bar.close()
    # Tear the process group down while the interpreter is whole: left to exit, gloo's worker
    # threads can still hold work that needs the GIL, and a rank aborts (SIGABRT) now and then.
    acc.end_training()
    return {"run": str(run), "steps": done, "seconds": round(time.perf_counter() - t0, 1)}


def iter_logged(run: Path) -> Iterator[dict[str, Any]]:
    p = run / "log.jsonl"
    if p.is_file():
        for line in p.read_text().splitlines():
            if line.strip():
                yield json.loads(line)
