"""Stage `motion`: train MotionNet (models/motion.py) on real talking video.

Data: datasets made by `rtavatar prepare` (each clip's `landmarks.npy`, dlib's 68 points per
frame, and its audio). The target of a frame is MOTION_POINTS in the face's own axes minus
the clip's mouth at rest (the median over the frames with no voice; a clip with too little
silence uses its most closed frames), so the net learns how a mouth moves, not whose it is.

Training sees exactly what a session computes (engine/motion.py): a window of audio holding
`motion.context` frames of past, `chunk` frames and the net's look-ahead, the frozen audio front
(Whisper's encoder) on that window alone, the head on its features, the loss on the `chunk`
frames. Whisper is bidirectional, so its features near a window's end differ from those of
the same audio inside a whole clip; trained on whole clips, the net lost a third of its gap
correlation on real clips when run a session's way (docs/RESULTS.md). `windows_per_clip`
windows are drawn per clip from the clean track and from each of `augment` degraded copies
(data/augment.py: rooms, band limits, noise, gain), encoded once before training and cached
in the run directory.

Held out for validation: clips whose id matches `val_pattern` (GRID: the second speaker) and
a `val_fraction` of the others by a hash of their id. Validation predicts each held-out clip
the way a session does and scores the Pearson r of the predicted against the real inner-lip
gap and mouth width (the measures `eval --videos` takes on rendered video); the medians are
logged at every checkpoint (RUN/val.jsonl), with the predicted-to-real std of the gap and of
the width that `rtavatar export --motion` turns into the shipped gains (`gain`, `width_gain`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import check_run_dir
from rtavatar.config import to_dict
from rtavatar.data.augment import augment_speech, change_voice, pitch_shift, speed_perturb
from rtavatar.data.dataset import Dataset
from rtavatar.engine.motion import ArrayTimeline, MotionTrack
from rtavatar.errors import DatasetError
from rtavatar.evaluation.metrics import finite_pearson
from rtavatar.models.motion import MotionConfig, MotionNet, shape_gap
from rtavatar.photo.landmarks import MOUTH_LEFT, MOUTH_RIGHT, face_frame
from rtavatar.training.common import TrainConfig, train_loop

log = logging.getLogger(__name__)
MIN_SILENT = 3  # frames of silence needed to take the rest shape from them


@dataclass
class MotionStageConfig:
    motion: MotionConfig = field(default_factory=MotionConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch_size=32, lr=1e-3, warmup=100, ema=0.99,
                                                                   ckpt_every=500, weight_decay=0.01, decay_from=1000))
    chunk: int = 8  # frames predicted per training window (a session's chunks are at most this long)
    windows_per_clip: int = 4  # session windows drawn per clip and audio copy
    val_pattern: str = r"^w1-"  # clip ids held out entirely (GRID: the second speaker)
    val_fraction: float = 0.05  # and this share of the rest, by hash of the clip id
    augment: int = 2  # degraded copies of each clip's audio beside the clean one
    speeds: tuple[float, ...] = ()  # speed-perturbed copies of each training clip (data/augment.speed_perturb), e.g. (0.9, 1.15)
    pitches: tuple[float, ...] = ()  # pitch-shifted copies of each training clip, semitones (data/augment.pitch_shift), e.g. (-3, 4)
    voices: tuple[tuple[float, float], ...] = ()  # copies as other voices: (formant ratio, pitch median Hz or 0) each (data/augment.change_voice)
    feature_weight: float = 1.0  # extra loss on the inner-lip gap and mouth width derived from the points
    width_weight: float = 1.0  # the width's share of that loss (its changes are about 0.6 of the gap's, so its squared error 0.4)


def rest_offsets(points: np.ndarray, voice: np.ndarray, idx: tuple[int, ...]) -> np.ndarray:
    """(N, 68, 2) landmarks (pixels) and (N,) voice flags -> (N, len(idx), 2) offsets of the
    points `idx` from the clip's rest shape, face axes, IOD."""
    ff = face_frame(points)
    ok = np.isfinite(ff).all((1, 2))
    if ok.sum() < 2:
        raise DatasetError("fewer than 2 frames with a face")
    silent = ok & (np.asarray(voice) == 0)
    if silent.sum() < MIN_SILENT:
        gap = shape_gap(ff, tuple(range(68)))
        silent = ok & (gap <= np.nanpercentile(np.where(ok, gap, np.nan), 10))
    rest = np.median(ff[silent][:, list(idx)], axis=0)
    return ff[:, list(idx)] - rest


def gap_width(offsets: np.ndarray | Tensor, idx: tuple[int, ...]) -> tuple[Any, Any]:
    """Inner-lip gap and mouth width change (IOD) of (..., P, 2) offsets from rest: both
    move exactly as `raw_features`' measures do on the full landmarks (up to the rest's own)."""
    pos = {p: k for k, p in enumerate(idx)}
    return shape_gap(offsets, idx), offsets[..., pos[MOUTH_RIGHT], 0] - offsets[..., pos[MOUTH_LEFT], 0]


def _clip_hash(clip_id: str) -> int:
    """A clip id's stable 32-bit hash (the held-out share and each clip's window draws)."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16)


def _held_out(clip_id: str, cfg: MotionStageConfig) -> bool:
    if cfg.val_pattern and re.search(cfg.val_pattern, clip_id):
        return True
    return _clip_hash(clip_id) / 0xFFFFFFFF < cfg.val_fraction


@dataclass
class MotionClip:
    clip_id: str
    wav: np.ndarray  # the clean audio, N x 640 samples
    target: np.ndarray  # (N, P, 2) float32
    valid: np.ndarray  # (N,) bool: frames with a face
    windows: list[tuple[int, Tensor]]  # (first target frame, frozen features of its session window), any audio copy


def session_windows(wav: np.ndarray, starts: list[int], chunk: int, net: MotionNet) -> list[np.ndarray]:
    """The audio a session's MotionTrack takes to predict frames [s, s + chunk) (engine/motion.py):
    `context` frames before, the net's look-ahead after, silence outside the clip."""
    timeline = ArrayTimeline(wav)
    return [timeline.span(s - net.cfg.context, s + chunk + net.future_frames) for s in starts]


def _encode_windows(wav: np.ndarray, n: int, original: bool, net: MotionNet, cfg: MotionStageConfig,
                    rng: np.random.Generator) -> list[Tensor]:
    """[starts, frozen features of each window]: `windows_per_clip` session windows of the clean
    track and of each of `augment` degraded copies for an original clip; for a speed-perturbed
    or pitch-shifted one, `windows_per_clip` windows, each degraded with probability 1/2 (fewer, to keep encoding time)."""
    k = cfg.windows_per_clip
    starts = [int(v) for v in rng.integers(0, n - cfg.chunk + 1, (1 + cfg.augment) * k if original else k)]
    if original:
        copies = [wav] + [augment_speech(wav, rng) for _ in range(cfg.augment)]
        audio = [a for j, w in enumerate(copies) for a in session_windows(w, starts[j * k : (j + 1) * k], cfg.chunk, net)]
    else:
        audio = [augment_speech(a, rng) if rng.random() < 0.5 else a for a in session_windows(wav, starts, cfg.chunk, net)]
    return [torch.tensor(starts)] + [net.frozen(torch.from_numpy(a)[None])[0].half() for a in audio]


def load_motion_clips(data: list[str | Path], net: MotionNet, cfg: MotionStageConfig, cache: Path | None = None,
                      seed: int = 0) -> tuple[list[MotionClip], list[MotionClip]]:
    """(train, validation) clips of every prepared dataset in `data`; the training clips' session
    windows (`windows_per_clip` per audio copy) through the frozen audio front, cached in `cache`."""
    clips: list[MotionClip] = []
    stored = torch.load(cache, weights_only=True) if cache is not None and cache.is_file() else {}
    fresh: dict[str, list[Tensor]] = {}
    val: list[MotionClip] = []
    for root in data:
        ds = Dataset(root).require()
        for i in tqdm(range(len(ds)), desc=f"motion data {Path(root).name}", mininterval=5):
            rec = ds.records[i]
            lm_path = ds.root / rec["path"] / "landmarks.npy"
            if not lm_path.is_file():
                raise DatasetError(f"{lm_path} is missing: stage motion trains on `rtavatar prepare` output (real video)")
            clip = ds.load(i, with_frames=False)
            points = np.load(lm_path)
            n = min(len(points), len(clip.audio) // SAMPLES_PER_FRAME)
            try:
                target = rest_offsets(points[:n], clip.columns["voice"][:n], cfg.motion.points)
            except DatasetError as e:
                log.warning("skipping %s: %s", rec["clip_id"], e)
                continue
            wav = clip.audio[: n * SAMPLES_PER_FRAME].astype(np.float32)
            held = _held_out(rec["clip_id"], cfg)
            variants = [("", wav, target)]
            if not held:
                variants += [(f"@{k:g}", *speed_perturb(wav, target, k)) for k in cfg.speeds]
                variants += [(f"^{p:+g}", pitch_shift(wav, p), target) for p in cfg.pitches]
                variants += [(f"~{f:g}/{p:g}", change_voice(wav, f, p), target) for f, p in cfg.voices]
            for suffix, w, t in variants:
                mc = MotionClip(rec["clip_id"] + suffix, w, np.nan_to_num(t).astype(np.float32), np.isfinite(t).all((1, 2)), [])
                if not held and len(t) >= cfg.chunk:
                    key = f"{Path(root).resolve()}::{mc.clip_id}"
                    if key not in stored:  # each clip's own draws, so a partly cached run draws what a fresh one would
                        rng = np.random.default_rng([seed, _clip_hash(mc.clip_id)])
                        fresh[key] = _encode_windows(w, len(t), not suffix, net, cfg, rng)
                    entry = stored.get(key) or fresh[key]
                    mc.windows = list(zip((int(s) for s in entry[0]), entry[1:]))
                (val if held else clips).append(mc)
    if cache is not None and fresh:
        torch.save({**stored, **fresh}, cache)
    train = [c for c in clips if c.windows]
    if not train:
        raise DatasetError(f"stage motion: no training clips of at least {cfg.chunk} frames left after the validation hold-out")
    return train, val


def motion_loss(pred: Tensor, target: Tensor, valid: Tensor, idx: tuple[int, ...], feature_weight: float,
                width_weight: float = 1.0) -> tuple[Tensor, dict[str, float]]:
    """MSE on the points (x100 IOD, frames with a face) plus `feature_weight` x the MSE of the
    gap and (times `width_weight`) the width they imply."""
    m = valid[..., None, None].float()
    points = (((pred - target) * 100) ** 2 * m).sum() / (m.sum() * pred.shape[-2] * 2).clamp(min=1)
    (gp, wp), (gt, wt) = gap_width(pred, idx), gap_width(target, idx)
    v = valid.float()
    feats = ((((gp - gt) * 100) ** 2 + width_weight * ((wp - wt) * 100) ** 2) * v).sum() / (2 * v.sum()).clamp(min=1)
    return points + feature_weight * feats, {"points": float(points.detach()), "gap_width": float(feats.detach())}


@torch.no_grad()
def validate(net: MotionNet, clips: list[MotionClip], chunk: int = 6) -> dict[str, float]:
    """Medians over held-out clips (clean audio, predicted `chunk` frames at a time from the
    windows a session takes) of the gap and width r against the real mouth and of the gap's
    predicted-to-real std (and the width's), and the mean squared error (x100 IOD)."""
    if not clips:
        return {}
    was = net.training
    net.eval()
    gap_r, width_r, mse, ratio, wratio = [], [], [], [], []
    track = MotionTrack(net)
    for c in clips:
        pred = track.clip_offsets(ArrayTimeline(c.wav), len(c.target), chunk) / net.cfg.gain
        pred[:, track.lips, 0] /= net.cfg.width_gain
        (gp, wp), (gt, wt) = gap_width(pred, net.cfg.points), gap_width(c.target, net.cfg.points)
        ok = c.valid
        gap_r.append(finite_pearson(gp[ok], gt[ok]))
        width_r.append(finite_pearson(wp[ok], wt[ok]))
        ratio.append(float(np.std(gp[ok]) / max(float(np.std(gt[ok])), 1e-9)))
        wratio.append(float(np.std(wp[ok]) / max(float(np.std(wt[ok])), 1e-9)))
        mse.append(float((((pred - c.target) * 100) ** 2)[ok].mean()))
    net.train(was)
    return {"val_gap_r": float(np.nanmedian(gap_r)), "val_width_r": float(np.nanmedian(width_r)), "val_mse": float(np.mean(mse)),
            "val_gap_std_ratio": float(np.median(ratio)), "val_width_std_ratio": float(np.median(wratio))}


def train_motion(cfg: MotionStageConfig, data: list[str | Path], run: str | Path, resume: bool = False, overwrite: bool = False,
                 stop_after: int | None = None) -> dict[str, Any]:
    run = Path(run)
    check_run_dir(run, resume, overwrite)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    net = MotionNet(cfg.motion)
    train, val = load_motion_clips(data, net, cfg, run / "frozen_cache.pt", cfg.train.seed)
    log.info("stage motion: %d training clips, %d held out", len(train), len(val))
    scores: dict[str, float] = {}
    first, last = cfg.motion.context, cfg.motion.context + cfg.chunk  # the window's predicted frames

    def loss_fn(model: nn.Module, step: int, gen: torch.Generator, noise: torch.Generator, rank: int,
                world: int) -> tuple[Tensor, dict[str, float]]:
        xs, ys, vs = [], [], []
        for _ in range(cfg.train.batch_size):
            c = train[int(torch.randint(len(train), (1,), generator=gen))]
            s, f = c.windows[int(torch.randint(len(c.windows), (1,), generator=gen))]
            xs.append(f.float())
            ys.append(torch.from_numpy(c.target[s : s + cfg.chunk]))
            vs.append(torch.from_numpy(c.valid[s : s + cfg.chunk]))
        pred = model(torch.stack(xs))[:, first:last]
        return motion_loss(pred, torch.stack(ys), torch.stack(vs), cfg.motion.points, cfg.feature_weight, cfg.width_weight)

    def on_checkpoint(model: nn.Module, step: int) -> None:
        scores.update(validate(model, val), step=step)
        with (run / "val.jsonl").open("a") as f:
            f.write(json.dumps(scores, sort_keys=True) + "\n")
        log.info("motion step %d: %s", step, {k: round(v, 3) for k, v in scores.items()})

    out = train_loop(run=run, cfg=cfg.train, model=net, config_dict={"stage": "motion", **to_dict(cfg)}, loss_fn=loss_fn,
                     resume=resume, on_checkpoint=on_checkpoint, stop_after=stop_after)
    return {**out, **scores, "train_clips": len(train), "val_clips": len(val)}
