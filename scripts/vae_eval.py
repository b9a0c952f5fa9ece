"""Held-out VAE reconstruction: PSNR over test-split clips (10 evenly spaced frames each) and
an input/reconstruction image.

    python scripts/vae_eval.py --checkpoint runs/vae-tiny --data data/synth90 [--image docs/results/tiny/vae_reconstruction.png]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from rtavatar.data.dataset import Dataset
from rtavatar.models.vae import LatentCodec
from rtavatar.training.teacher import load_codec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--image", default="")
    a = p.parse_args()
    codec = load_codec(a.checkpoint)
    ds = Dataset(a.data, split="test")
    psnrs, shown = [], []
    for i in range(len(ds)):
        frames = ds.load(i).frames
        x = frames[np.linspace(0, len(frames) - 1, 10).astype(int)]
        with torch.no_grad():
            y = LatentCodec.to_uint8(codec.decode(codec.encode(LatentCodec.to_tensor(x))))
        mse = ((x.astype(np.float64) - y) ** 2).reshape(len(x), -1).mean(1)
        psnrs += list(10 * np.log10(255.0**2 / mse))
        shown.append(np.concatenate([x[0], y[0]], 0))
    if a.image:
        Image.fromarray(np.concatenate(shown, 1)).save(a.image)
    print(json.dumps({"psnr_mean": round(float(np.mean(psnrs)), 2), "psnr_min": round(float(np.min(psnrs)), 2),
                      "psnr_max": round(float(np.max(psnrs)), 2), "frames": len(psnrs)}))


if __name__ == "__main__":
    main()
