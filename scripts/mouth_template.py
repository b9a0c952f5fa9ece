"""Build the open-mouth interior maps the photo renderer paints inside parted lips (photo/mouth.py).

What a real mouth shows between its lips (upper teeth under the lip, the lower teeth or the
tongue, the dark of the cavity, and how much of each) depends on how far it is open. This reads
it from real speech: GRID speaker s1's clips (training material, CC BY 4.0), dlib on every frame;
each frame's inside of the inner-lip contour is resampled onto a grid in mouth coordinates (u
from the left inner corner to the right one, v from the upper inner lip down to the lower one,
both 0..1, in the face's axes), its colour divided by what white looks like in that frame
(`photo.mouth.photo_white`: the light and exposure, so the maps carry the interior's own
colours), and the frames are binned by their inner-lip gap (IOD) and a median taken per bin.

    python scripts/mouth_template.py ../shared/grid/s1 --clips 150 \\
        --out src/rtavatar/assets/mouth/interior.safetensors

About 5 minutes on 2 cores. Tensors: `maps` (bins, V, U, 3) float32 and `gaps` (bins,), each
bin's median gap in IOD.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from rtavatar.photo.mouth import INTERIOR_GRID, mouth_frame, photo_white

EDGES = (0.02, 0.045, 0.07, 0.1, 0.13, 0.17, 0.22, 0.3)  # inner-lip gap bins, IOD
MIN_FRAMES = 20  # a bin needs this many frames


def clip_maps(path: str) -> list[tuple[float, np.ndarray]]:
    from scipy import ndimage

    from rtavatar.evaluation.photos import FaceReader
    from rtavatar.evaluation.videos import read_clip, track_faces
    from rtavatar.photo.landmarks import inner_gap

    frames, _ = read_clip(path)
    track = track_faces(frames, FaceReader().fa)
    out = []
    for f, pts in zip(frames, track.points):
        if not np.isfinite(pts).all():
            continue
        gap = inner_gap(pts)
        white = photo_white(f, pts)
        if gap < EDGES[0] or white is None:
            continue
        ys, xs = mouth_frame(pts)
        rgb = np.stack([ndimage.map_coordinates(f[..., c].astype(np.float32), [ys, xs], order=1, mode="nearest") for c in range(3)], -1)
        out.append((gap, rgb / np.maximum(np.asarray(white, np.float32), 1.0)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a folder of GRID clips (speaker s1)")
    ap.add_argument("--clips", type=int, default=150, help="every k-th clip so that this many are read")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = sorted(args.root.glob("*.mp4"))
    files = files[:: max(1, len(files) // args.clips)][: args.clips]
    gaps, maps = [], []
    with ProcessPoolExecutor(args.workers) as ex:
        for i, rows in enumerate(ex.map(clip_maps, [str(f) for f in files])):
            gaps += [g for g, _ in rows]
            maps += [m for _, m in rows]
            if i % 25 == 0:
                logging.info("%d/%d clips, %d open frames", i + 1, len(files), len(maps))
    gaps_a, maps_a = np.array(gaps), np.stack(maps)
    bins, centres = [], []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        k = (gaps_a >= lo) & (gaps_a < hi)
        if k.sum() >= MIN_FRAMES:
            bins.append(np.median(maps_a[k], 0))
            centres.append(float(np.median(gaps_a[k])))
            logging.info("gap %.3f-%.3f IOD: %d frames", lo, hi, k.sum())
    from safetensors.numpy import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"source": "GRID corpus speaker s1 (CC BY 4.0), dlib landmarks", "clips": str(len(files)),
            "frames": str(len(maps)), "grid_vu": str(INTERIOR_GRID)}
    save_file({"maps": np.stack(bins).astype(np.float32), "gaps": np.array(centres, np.float32)}, str(args.out), metadata=meta)
    logging.info("%d bins from %d open frames of %d clips -> %s", len(bins), len(maps), len(files), args.out)


if __name__ == "__main__":
    main()
