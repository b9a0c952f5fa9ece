"""MotionNets side by side, alone and averaged: every combination of the given runs (the mean
of their offsets), predicted 6 frames at a time from a session's windows, scored by medians of
the gap and width r against the real mouth on realvid (dlib tracks cached by motion_ceiling.py)
and on a prepared dataset's held-out clips, split by speaker (GRID: w1 and s1's held-out share).

    python scripts/bench/motion_nets.py RUN [RUN ...] --tracks data/realvid_tracks.npz \
        --data data/grid128 --cache runs/motion-la8/frozen_cache.pt
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import load_motion
from rtavatar.engine.motion import ArrayTimeline, MotionTrack
from rtavatar.evaluation.metrics import finite_pearson
from rtavatar.evaluation.videos import lagged_r
from rtavatar.photo.landmarks import face_frame
from rtavatar.training.motion import MotionStageConfig, gap_width, load_motion_clips


def predict(nets: dict, wav: np.ndarray, n: int) -> dict[str, np.ndarray]:
    return {r: MotionTrack(net).clip_offsets(ArrayTimeline(wav), n, 6) / net.cfg.gain for r, net in nets.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--tracks", type=Path, required=True, help="realvid's dlib tracks (motion_ceiling.py --cache)")
    ap.add_argument("--data", default=None, help="a prepared dataset: its held-out clips too")
    ap.add_argument("--cache", type=Path, default=None, help="a motion run's frozen_cache.pt (spares encoding the training clips)")
    args = ap.parse_args()
    nets = {r: load_motion(r).eval() for r in args.runs}
    pts_idx = nets[args.runs[0]].cfg.points
    sets: dict[str, list[tuple[dict, np.ndarray, np.ndarray, bool]]] = {"realvid": []}  # ..., best lag of +-2?
    d = np.load(args.tracks)
    for name in sorted({k.split(":")[0] for k in d.keys()}):
        pts, audio = d[name + ":pts"], d[name + ":audio"]
        n = min(len(pts), len(audio) // SAMPLES_PER_FRAME)
        real = face_frame(pts[:n])[:, list(pts_idx)]
        sets["realvid"].append((predict(nets, audio, n), real, np.isfinite(real).all((1, 2)), True))
    if args.data:
        cfg = MotionStageConfig(motion=nets[args.runs[0]].cfg)
        _, val = load_motion_clips([args.data], nets[args.runs[0]], cfg, args.cache)
        for c in val:
            key = "w1" if c.clip_id.startswith("w1") else "s1"
            sets.setdefault(key, []).append((predict(nets, c.wav, len(c.target)), c.target, c.valid, False))
    for k in range(1, len(args.runs) + 1):
        for combo in itertools.combinations(args.runs, k):
            cells = []
            for name, clips in sets.items():
                rows = []
                for preds, real, ok, lag in clips:
                    (gp, wp), (gr, wr) = gap_width(np.mean([preds[r] for r in combo], 0)[: len(real)], pts_idx), gap_width(real, pts_idx)
                    best = lagged_r(gp, gr)[0] if lag else finite_pearson(gp[ok], gr[ok])
                    rows.append((best, finite_pearson(gp[ok], gr[ok]), finite_pearson(wp[ok], wr[ok])))
                m = np.nanmedian(np.array(rows), 0)
                cells.append(f"{name}: gap r {m[0]:.3f} (lag 0 {m[1]:.3f}) width r {m[2]:.3f}")
            print(" + ".join(Path(r).name for r in combo), "|", " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
