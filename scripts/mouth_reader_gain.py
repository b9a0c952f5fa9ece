"""The gain of paste mode `warp`'s MouthReader for a model: its readings of the openings the
model draws on photo clips, against the clips' true openings (docs/RESULTS.md). Calibrate on
training-split clips (`synth-data --test-fraction 0 --photo-fraction 1`): the held-out people
are for reporting.

    python scripts/mouth_reader_gain.py --data data/devclips [--clips 6] [--checkpoint CK] [--expert RUN] [--out F.json] [--write]

The reader is the checkpoint's own (its aperture head if it ships one, else MouthReader), or
with `--expert` the aperture head of that `train syncnet` run. `--write` records the gain in
the checkpoint's inference.json (`warp_gain`, what paste mode `warp` uses), by default the
shipped model's, and with `--expert` ships that head as the model's reader (reader.safetensors).

Each photo clip's first frame is the portrait (upscaled 4x so dlib finds its landmarks); the
model animates it with the clip's own audio, and the reader (gain 1) reads each generated face.
The gain is the least-squares slope through the origin of the true opening on the reading.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rtavatar.engine import Avatar
from rtavatar.engine.portrait import ExpertMouthReader, MouthReader
from rtavatar.media import read_audio, read_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--expert", default=None, help="a `train syncnet` run: read with its aperture head")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--out", default=None)
    ap.add_argument("--write", action="store_true", help="store the gain in the checkpoint (inference.json warp_gain)")
    args = ap.parse_args()
    av = Avatar.load(args.checkpoint) if args.checkpoint else Avatar.from_pretrained()
    head = av.bundle.reader
    if args.expert:
        from rtavatar.evaluation.sync import load_expert
        from rtavatar.models.syncnet import ApertureHead

        head = ApertureHead.of(load_expert(args.expert).net)
    root = Path(args.data)
    recs = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    recs = [r for r in recs if not r["identity"].startswith("synth")][: args.clips]
    rows, reads, truths = [], [], []
    for rec in recs:
        clip = root / rec["path"]
        meta = json.loads((clip / "meta.json").read_text())
        first = read_video(clip / "video.mp4", with_audio=False).frames[0]
        big = np.asarray(Image.fromarray(first).resize((4 * first.shape[1], 4 * first.shape[0]), Image.BICUBIC))
        p = av.portrait(big)
        audio = read_audio(clip / "audio.wav")
        faces = av.generate(p, audio)
        cs = av.sampler()
        recon = cs.reconstruction(cs.reference(p.face))
        x0, y0, side = p.box
        reader = (ExpertMouthReader(recon, head) if head is not None else
                  MouthReader(recon, (p.landmarks - np.array([x0, y0], np.float64)) * (av.resolution / side)))
        got = np.array([reader(f) for f in faces])
        true = np.asarray(meta["frames"]["mouth_open"], np.float64)[: len(got)]
        got = got[: len(true)]
        rows.append({"clip": rec["clip_id"], "identity": rec["identity"], "r": float(np.corrcoef(got, true)[0, 1]),
                     "slope": float(true @ got / max(got @ got, 1e-9))})
        reads.append(got)
        truths.append(true)
        print(rows[-1])
    g, t = np.concatenate(reads), np.concatenate(truths)
    out = {"clips": rows, "gain": float(t @ g / max(g @ g, 1e-9)), "r": float(np.corrcoef(g, t)[0, 1]),
           "model": args.checkpoint or "shipped", "reader": args.expert or ("expert" if head is not None else "dark")}
    print(json.dumps({k: out[k] for k in ("gain", "r")}))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.write:
        from rtavatar.checkpoints import pretrained_path, set_warp_gain

        set_warp_gain(args.checkpoint or pretrained_path(), round(out["gain"], 2), head if args.expert else None)


if __name__ == "__main__":
    main()
