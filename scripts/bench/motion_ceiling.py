"""How well a MotionNet alone follows real people: its predicted inner-lip gap and mouth width
against dlib's reading of real talking clips, from each clip's own audio (no rendering).

    python scripts/bench/motion_ceiling.py RUN_OR_CHECKPOINT ../shared/realvid [--cache tracks.npz] [--chunk N]

The rendered pipeline (`rtavatar eval --videos`) can only lose from here: this is the ceiling
the renderer and engine work against. `--chunk N` predicts N frames at a time from the windows a session takes (engine/motion.py:
`motion.context` frames of past, the net's look-ahead of future) instead of the whole clip in one window.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.engine.motion import ArrayTimeline, MotionTrack
from rtavatar.evaluation.videos import lagged_r, list_videos, read_clip, track_faces
from rtavatar.photo.align import FaceAnalyzer
from rtavatar.photo.landmarks import face_frame
from rtavatar.evaluation.metrics import finite_pearson
from rtavatar.training.motion import gap_width
from rtavatar.checkpoints import load_motion


def real_tracks(videos: list[Path], cache: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    store = dict(np.load(cache, allow_pickle=False)) if cache and cache.is_file() else {}
    out, fa = {}, None
    for v in videos:
        if f"{v.name}:pts" not in store:
            fa = fa or FaceAnalyzer()
            frames, audio = read_clip(v)
            store[f"{v.name}:pts"], store[f"{v.name}:audio"] = track_faces(frames, fa).points, audio
        out[v.name] = store[f"{v.name}:pts"], store[f"{v.name}:audio"]
    if cache:
        np.savez(cache, **store)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("videos")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--chunk", type=int, default=0)
    ap.add_argument("--no-gate", action="store_true", help="with --chunk: without the speech gate (MotionConfig.voice_gate)")
    args = ap.parse_args()
    net = load_motion(args.model).eval()
    net.cfg.voice_gate = net.cfg.voice_gate and not args.no_gate
    rows = []
    for name, (pts, audio) in real_tracks(list_videos(args.videos), args.cache).items():
        if args.chunk:
            n = len(audio) // SAMPLES_PER_FRAME
            pred = MotionTrack(net).clip_offsets(ArrayTimeline(audio), n, args.chunk) / net.cfg.gain
        else:
            with torch.no_grad():
                pred = net.predict(torch.from_numpy(audio)[None])[0].numpy()
        n = min(len(pred), len(pts))
        ff = face_frame(pts[:n])[:, list(net.cfg.points)]
        (gp, wp), (gr, wr) = gap_width(pred[:n], net.cfg.points), gap_width(ff, net.cfg.points)
        r, lag = lagged_r(gp, gr)
        rows.append({"clip": name, "gap_r": r, "gap_lag": lag, "gap_r0": finite_pearson(gp, gr), "width_r": finite_pearson(wp, wr),
                     "gap_std_ratio": float(np.nanstd(gp) / np.nanstd(gr)), "width_std_ratio": float(np.nanstd(wp) / np.nanstd(wr))})
        print(f"{name:28s} gap r {r:5.2f} (lag {lag:+d}) r0 {rows[-1]['gap_r0']:5.2f} width r {rows[-1]['width_r']:5.2f} "
              f"amp {rows[-1]['gap_std_ratio']:4.2f} width amp {rows[-1]['width_std_ratio']:4.2f}")
    med = {k: float(np.nanmedian([r[k] for r in rows])) for k in ("gap_r", "gap_r0", "width_r", "gap_std_ratio", "width_std_ratio")}
    print("median", json.dumps({k: round(v, 3) for k, v in med.items()}))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "median": med}, indent=1))


if __name__ == "__main__":
    main()
