"""Does dlib read the renderer's painted blink as a shut eye? On still faces, no video made.

    python scripts/bench/blink_readback.py ../shared/grid/s1 [--every 80] [--frame 10]

For each picture (or frame `--frame` of each video) in the folder, every `--every`-th file:
dlib's 68 points, the eyes shut by `photo.lids.paint_blink` (closure 1), dlib again, and the
eye-aspect ratio shut / open. `eval --videos` counts a blink where it falls under 0.6
(`evaluation.videos.count_blinks`), so that is the share that matters. Prints one line per
file and the median.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rtavatar.evaluation.photos import FaceReader
from rtavatar.evaluation.videos import VIDEO_SUFFIXES, eye_aspect_ratio, read_clip, track_faces
from rtavatar.media import read_image
from rtavatar.photo.lids import paint_blink

IMAGES = (".jpg", ".jpeg", ".png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--frame", type=int, default=10, help="the frame of a video to use")
    args = ap.parse_args()
    fa = FaceReader().fa
    files = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in IMAGES + VIDEO_SUFFIXES)[:: args.every]

    def ear(img: np.ndarray) -> float:
        return float(eye_aspect_ratio(track_faces([img], fa).points)[0])  # NaN: no face

    ratios = {}
    for f in files:
        img = read_image(f) if f.suffix.lower() in IMAGES else read_clip(f)[0][args.frame]
        pts = track_faces([img], fa).points[0]
        if not np.isfinite(pts).all():
            continue
        shut = np.clip(paint_blink(img, pts, (1.0, 1.0)) + 0.5, 0, 255).astype(np.uint8)
        ratios[f.name] = ear(shut) / ear(img)
        print(f"{f.name:32s} shut / open EAR {ratios[f.name]:.2f}")
    r = np.array(list(ratios.values()))
    print(json.dumps({"files": len(r), "median": round(float(np.nanmedian(r)), 3), "under_0.6": int((r < 0.6).sum())}))


if __name__ == "__main__":
    main()
