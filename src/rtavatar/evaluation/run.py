"""`rtavatar eval`: generate from held-out clips and score them (one table row per system).

Every system animates each test clip's first frame with the clip's audio; the ground-truth
clip itself and the ground truth with its audio delayed by 8 frames are scored alongside as
reference rows (the second shows what a sync failure looks like in each column).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.data.dataset import Clip, Dataset
from rtavatar.evaluation.metrics import finite_mean, frechet_distance, pearson, silent_frames, standard_error, temporal_jitter
from rtavatar.evaluation.sync import ExpertScorer, sync_scores

log = logging.getLogger(__name__)

Generator = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (portrait, audio) -> frames


def load_clips(data: str, split: str = "test", clips: int = 0, seconds: float = 8.0) -> list[Clip]:
    ds = Dataset(data, split=split).require()
    out = []
    for i in range(min(len(ds), clips) if clips else len(ds)):
        c = ds.load(i)
        n = min(c.n_frames, int(seconds * FPS))
        out.append(Clip(c.clip_id, c.frames[:n], c.audio[: n * SAMPLES_PER_FRAME],
                        {k: v[:n] for k, v in c.columns.items()}, c.meta))
    return out


def score_videos(name: str, videos: list[np.ndarray], audios: list[np.ndarray], clips: list[Clip], scorer: ExpertScorer,
                 real_features: np.ndarray | None, seconds: float | None = None) -> dict:
    """Mean of each metric over the clips, its standard error over clips (`<metric>_se`), and
    fps if `seconds` of generation were timed."""
    rows, feats = [], []
    for frames, audio, clip in zip(videos, audios, clips):
        v = scorer.video_embeddings(frames)
        s = sync_scores(scorer, frames, audio, video=v)
        est = scorer.mouth_open(frames)
        silent = silent_frames(clip.columns["voice"])
        rows.append({"sync_c": s["sync_c"], "sync_d": s["sync_d"], "abs_offset": abs(s["offset"]),
                     "aperture_corr": pearson(est, clip.columns["mouth_open"]),
                     "closure_in_silence": float(est[silent].mean()) if silent.any() else float("nan"),
                     "jitter": temporal_jitter(frames)})
        feats.append(v.numpy())
    out = {"system": name, **{k: finite_mean([r[k] for r in rows]) for k in rows[0]},
           **{f"{k}_se": standard_error([r[k] for r in rows]) for k in rows[0]}}  # over clips
    out["fd_sync"] = frechet_distance(real_features, np.concatenate(feats)) if real_features is not None else 0.0
    if seconds is not None:
        out["fps"] = sum(len(v) for v in videos) / seconds
    return out


def evaluate(systems: dict[str, Generator], clips: list[Clip], scorer: ExpertScorer, shift: int = 8) -> list[dict]:
    """Reference rows, then one row per system (name -> generator)."""
    truth = [c.frames for c in clips]
    audio = [c.audio for c in clips]
    real = np.concatenate([scorer.video_embeddings(f).numpy() for f in truth])
    late = [np.concatenate([np.zeros(shift * SAMPLES_PER_FRAME, np.float32), a])[: len(a)] for a in audio]
    table = [score_videos("ground truth", truth, audio, clips, scorer, None),
             score_videos(f"ground truth, audio {shift} frames late", truth, late, clips, scorer, None)]
    for name, gen in systems.items():
        videos, t = [], 0.0
        for c in tqdm(clips, desc=name, leave=False):
            t0 = time.perf_counter()
            videos.append(gen(c.frames[0], c.audio))
            t += time.perf_counter() - t0
        table.append(score_videos(name, videos, audio, clips, scorer, real, seconds=t))
        table[-1]["speedup"] = table[-1]["fps"] / table[2]["fps"]  # relative to the first system (list the teacher first)
        log.info("%s: %s", name, table[-1])
    return table


def _cell(row: dict, col: str) -> str:
    if col not in row:
        return "–"
    se = row.get(f"{col}_se")
    return f"{row[col]:.3f} ± {se:.3f}" if se is not None and np.isfinite(se) else f"{row[col]:.3f}"


def format_table(rows: list[dict]) -> str:
    """A Markdown table; per-clip metrics show mean ± standard error over clips."""
    cols = ["sync_c", "sync_d", "abs_offset", "aperture_corr", "closure_in_silence", "jitter", "fd_sync", "fps", "speedup"]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['system']} | " + " | ".join(_cell(r, c) for c in cols) + " |")
    return "\n".join(lines)
