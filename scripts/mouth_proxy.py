"""Ad-hoc lip-motion check for synthetic clips (NOT a standard metric; issue 4 brings Sync-C/D
with our own sync expert). On a held-out clip: the 60 pixels whose intensity best tracks the
ground-truth mouth opening in the *real* frames define a mouth region; we report the Pearson
correlation between that region's mean intensity in the *generated* frames and the ground-truth
opening. Also reports the same number for the real frames (the ceiling) and for frames of the
real clip shuffled in time (the floor).

    python scripts/mouth_proxy.py --checkpoint runs/teacher-tiny --data data/synth90 [--clip 0] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.data.dataset import Dataset
from rtavatar.engine import Avatar


def region_corr(frames: np.ndarray, opening: np.ndarray, region: np.ndarray) -> float:
    series = frames.reshape(len(frames), -1)[:, region].mean(1)
    return float(np.corrcoef(series, opening)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--clip", type=int, default=0, help="index within the test split")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    ds = Dataset(a.data, split="test")
    clip = ds.load(a.clip)
    model = Avatar.load(a.checkpoint)
    n = min(clip.n_frames, int(a.seconds * FPS))
    opening = clip.columns["mouth_open"][:n].astype(float)
    gen = model.generate(clip.frames[0], clip.audio[: n * SAMPLES_PER_FRAME], align="center", steps=a.steps)
    real = clip.frames[:n].mean(-1)  # grey
    fake = gen[:n].mean(-1)
    flat = real.reshape(n, -1)
    z = (flat - flat.mean(0)) / (flat.std(0) + 1e-6)
    corr_px = (z * ((opening - opening.mean()) / (opening.std() + 1e-9))[:, None]).mean(0)
    region = np.argsort(-np.abs(corr_px))[:60]
    sign = np.sign(corr_px[region])
    real_signed = flat[:, region] * sign
    fake_signed = fake.reshape(n, -1)[:, region] * sign
    rng = np.random.default_rng(0)
    out = {
        "clip": clip.clip_id, "frames": n, "steps": a.steps,
        "generated_corr": float(np.corrcoef(fake_signed.mean(1), opening)[0, 1]),
        "real_corr_ceiling": float(np.corrcoef(real_signed.mean(1), opening)[0, 1]),
        "shuffled_real_floor": float(np.corrcoef(real_signed.mean(1)[rng.permutation(n)], opening)[0, 1]),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
