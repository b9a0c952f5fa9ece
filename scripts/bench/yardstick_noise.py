"""How much of a change in `eval --videos` is dlib's own noise: the same rendered frames scored
again after shifting them by a whole pixel (an exact copy of every pixel, nothing re-rendered).

    python scripts/bench/yardstick_noise.py ../shared/realvid [--shifts 0,0 1,0 0,1 1,1] [--seed 0] [--json OUT]

A shift of whole pixels changes nothing a viewer could see, but dlib's face box and its
regression trees start from other pixels, so its reading of a small mouth moves. The spread of
the medians over the shifts is the least difference between two renderers (or two models) that
one `eval --videos` run can tell apart; a change smaller than it is noise however it is made.
Edges are padded with their own pixels. The rendering is the shipped defaults, as `eval --videos`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rtavatar import Avatar
from rtavatar.evaluation.photos import FaceReader
from rtavatar.evaluation.videos import COLUMNS, list_videos, pick_portrait, read_clip, score_clip, track_faces
from rtavatar.photo.options import PasteOptions

SHOWN = ("gap_r", "gap_r0", "gap_std_ratio", "width_r", "mouth_dist", "head_ratio")


def shifted(frames: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """(N, H, W, 3) frames moved right by dx and down by dy whole pixels, edges repeated."""
    if dx == dy == 0:
        return frames
    n, h, w, _ = frames.shape
    pad = np.pad(frames, ((0, 0), (max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)), (0, 0)), mode="edge")
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return pad[:, y0 : y0 + h, x0 : x0 + w]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("videos")
    ap.add_argument("--shifts", nargs="+", default=["0,0", "1,0", "0,1", "1,1"], help="dx,dy in whole pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    shifts = [tuple(int(v) for v in s.split(",")) for s in args.shifts]
    avatar, reader = Avatar.from_pretrained(), FaceReader()
    rows: dict[str, list[dict]] = {f"{dx},{dy}": [] for dx, dy in shifts}
    for path in tqdm(list_videos(args.videos), desc="videos"):
        real, audio = read_clip(path)
        track = track_faces(real, reader.fa)
        k = pick_portrait(track)
        gen = avatar.generate(avatar.portrait(real[k]), audio, paste=PasteOptions(), seed=args.seed)[: len(real)]
        for dx, dy in shifts:
            rows[f"{dx},{dy}"].append({"clip": path.name, **score_clip(real, shifted(gen, dx, dy), audio, k, reader.fa, None, track)})
    first = next(iter(rows.values()))
    scored = [c for c in COLUMNS if any(np.isfinite(r.get(c, np.nan)) for r in first)]  # identity is not scored here
    medians = {s: {c: float(np.nanmedian([r[c] for r in rs])) for c in scored} for s, rs in rows.items()}
    for s, m in medians.items():
        print(f"shift {s:>5s}: " + "  ".join(f"{c} {m[c]:.3f}" for c in SHOWN))
    spread = {c: float(max(m[c] for m in medians.values()) - min(m[c] for m in medians.values())) for c in SHOWN}
    clips = range(len(first))
    per_clip = {c: float(np.nanmedian([np.nanmax(v) - np.nanmin(v) for v in ([rs[i][c] for rs in rows.values()] for i in clips)]))
                for c in SHOWN}
    print("spread of the medians over the shifts: " + "  ".join(f"{c} {v:.3f}" for c, v in spread.items()))
    print("a clip's own spread, median over clips: " + "  ".join(f"{c} {v:.3f}" for c, v in per_clip.items()))
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "medians": medians, "spread": spread, "per_clip_spread": per_clip,
                                         "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
