"""How well a model's own mouth follows the speech on real photos, before any paste-back.

    python scripts/bench/lip_timing.py --checkpoint A --checkpoint B --photos data/dev \\
        --audio src/rtavatar/assets/speech/hello.wav [--webcam] --out docs/results/MODEL/lip_timing_cpu.json

For each photo and model: the generated 128 px face's opening as the model's own warp reader
reads it (its sync expert's aperture head, minus its reading of the portrait's
reconstruction, times the model's gain), and its Pearson r with the speech energy (both
smoothed over 3 frames, as `rtavatar eval --photos` does with dlib's gap). This is the signal
paste mode `warp` turns into the photo's lips, so it bounds the gap-energy r of the photo
evaluation. `--webcam` also scores a fixed webcam-like copy of every photo (x0.45 exposure,
noise std 2.5 % of white, resized to 600 px high).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from rtavatar.engine import Avatar
from rtavatar.photo.readers import ExpertMouthReader
from rtavatar.evaluation.photos import _pearson, _smooth, frame_energy, list_photos, speech_masks
from rtavatar.media import read_audio, read_image


def webcam_copy(img: np.ndarray, seed: int = 0) -> np.ndarray:
    h, w = img.shape[:2]
    small = np.asarray(Image.fromarray(img).resize((round(w * 600 / h), 600), Image.BILINEAR), np.float32) / 255
    noisy = small * 0.45 + np.random.default_rng(seed).normal(0, 0.025, small.shape)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8)


def score(avatar: Avatar, img: np.ndarray, audio: np.ndarray) -> dict[str, float]:
    p = avatar.portrait(img)
    cs = avatar.sampler()
    reader = ExpertMouthReader(cs.reconstruction(cs.reference(p.face)), avatar.bundle.reader, avatar.bundle.cfg.warp_gain)
    frames = avatar.generate(p, audio)
    opening = _smooth(np.array([reader(f) for f in frames]))
    energy = frame_energy(audio, len(frames))
    speech, _ = speech_masks(energy)  # the speech frames of `rtavatar eval --photos`
    return {"r": round(_pearson(opening, energy), 3), "opening_speech": round(float(opening[speech].mean()), 3),
            "opening_p90": round(float(np.percentile(opening, 90)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--webcam", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    audio = read_audio(args.audio)
    photos = [(p.stem, read_image(p)) for p in list_photos(args.photos)]
    if args.webcam:
        photos += [(f"{name}:webcam", webcam_copy(img)) for name, img in photos]
    rows = []
    for ckpt in args.checkpoint:
        avatar = Avatar.load(ckpt)
        for name, img in photos:
            rows.append({"checkpoint": ckpt, "photo": name, **score(avatar, img, audio)})
            print(json.dumps(rows[-1]), flush=True)
    for ckpt in args.checkpoint:
        rs = [r["r"] for r in rows if r["checkpoint"] == ckpt]
        print(f"{ckpt}: mean r {np.mean(rs):.3f}, min {np.min(rs):.3f} over {len(rs)}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
