"""Throughput of `rtavatar prepare` on this machine: video-minutes prepared per wall-clock minute.

Builds 720p talking videos from synthetic renders (a 256 px face upscaled to 400 px on a
1280x720 canvas, 25 fps, speech), then runs `prepare` on them. Real footage decodes at a
similar cost per pixel; detection cost depends on the face count and size.

    python scripts/bench/bench_prepare.py --videos 4 --out /tmp/bench_prepare [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rtavatar.data.dataset import Dataset
from rtavatar.data.prepare import PrepareConfig, prepare_dataset
from rtavatar.data.synth import SynthConfig, synthesize_dataset
from rtavatar.media import write_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_prepare"))
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--detect-every", type=int, default=1)
    args = ap.parse_args()
    syn, vids = args.out / "syn", args.out / "videos"
    synthesize_dataset(SynthConfig(clips=args.videos, seed=3, resolution=256, seconds=(8.0, 10.0)), syn, progress=False)
    vids.mkdir(parents=True, exist_ok=True)
    ds = Dataset(syn)
    for i in range(len(ds)):
        clip = ds.load(i)

        def frames(clip=clip):  # a generator: 720p frames never all sit in memory
            for f in clip.frames:
                canvas = np.full((720, 1280, 3), 70, np.uint8)
                canvas[160:560, 440:840] = np.asarray(Image.fromarray(f).resize((400, 400), Image.BICUBIC))
                yield canvas

        write_video(vids / f"talk{i}.mp4", frames(), clip.audio)
    cfg = PrepareConfig(resolution=args.resolution, detect_every=args.detect_every)
    out = args.out / f"prepared-{args.detect_every}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    summary = prepare_dataset(vids, out, cfg, workers=args.workers, progress=False)
    print(json.dumps({**summary, "video_minutes_per_minute": summary["throughput"]}))


if __name__ == "__main__":
    main()
