"""Does a model's mouth follow the audio? On a held-out clip (identity and sentence never
trained on), generate from its first frame twice: with the clip's own audio, and with the
audio of another held-out clip. The sync expert reads the mouth opening of every frame; if
the mouth follows the audio, the first video's opening tracks the ground truth and the
second one's tracks the *other* clip's ground truth instead.

Writes a PNG (ground-truth mouth crops, generated mouth crops, the opening curves) and prints
the correlations as JSON. A diagnostic figure, not a benchmark (`rtavatar eval` is that).

    python scripts/lip_strip.py --checkpoint runs/teacher-tiny --expert runs/syncnet-tiny --out docs/results/teacher/teacher_lipsync.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rtavatar import FPS, SAMPLES_PER_FRAME  # noqa: E402
from rtavatar.data.behavior import STATES  # noqa: E402
from rtavatar.data.dataset import Dataset  # noqa: E402
from rtavatar.evaluation.sync import load_expert  # noqa: E402
from rtavatar.engine import Avatar  # noqa: E402
from rtavatar.models.syncnet import mouth_crops  # noqa: E402
from rtavatar.models.vae import LatentCodec  # noqa: E402


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--expert", required=True, help="a `train syncnet` run (reads the mouth opening)")
    p.add_argument("--data", default="data/synth90")
    p.add_argument("--clip", type=int, default=0, help="index in the test split; the other audio is the next speaking clip's")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--show", type=int, default=16, help="mouth crops shown per row (every 2nd frame)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(0)
    ds = Dataset(a.data, split="test")
    clip = ds.load(a.clip)
    n = min(clip.n_frames, int(a.seconds * FPS))
    # The other audio must be speech over those frames (a listening clip's track is silence,
    # which only shows that silence closes the mouth).
    speaking = lambda c: (np.asarray(c.columns["state"][:n]) == STATES.index("speak")).mean() > 0.5  # noqa: E731
    other = next(c for k in range(1, len(ds)) if speaking(c := ds.load((a.clip + k) % len(ds))) and c.n_frames >= n)
    model = Avatar.load(a.checkpoint)
    scorer = load_expert(a.expert)
    truth, truth_other = clip.frames[:n], other.frames[:n]
    own = model.generate(clip.frames[0], clip.audio[: n * SAMPLES_PER_FRAME], align="center", steps=a.steps)
    swapped = model.generate(clip.frames[0], other.audio[: n * SAMPLES_PER_FRAME], align="center", steps=a.steps)
    op = {k: scorer.mouth_open(v) for k, v in
          {"truth": truth, "truth_other": truth_other, "own": own, "swapped": swapped}.items()}
    out = {"checkpoint": a.checkpoint, "clip": clip.meta.get("clip_id", a.clip), "other": other.meta.get("clip_id"), "frames": n,
           "own_audio_vs_truth_r": round(corr(op["own"], op["truth"]), 3),
           "other_audio_vs_truth_r": round(corr(op["swapped"], op["truth"]), 3),
           "other_audio_vs_other_truth_r": round(corr(op["swapped"], op["truth_other"]), 3),
           "truth_vs_other_truth_r": round(corr(op["truth"], op["truth_other"]), 3)}

    idx = list(range(0, min(n, 2 * a.show), 2))
    crops = lambda frames: mouth_crops(LatentCodec.to_tensor(frames[idx]), scorer.net.cfg)  # noqa: E731
    rows = [LatentCodec.to_uint8(crops(f)) for f in (truth, own, swapped)]
    strip = np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)
    fig = plt.figure(figsize=(10, 4.2), dpi=110)
    ax0 = fig.add_axes((0.11, 0.6, 0.87, 0.33))
    ax0.imshow(strip)
    ax0.set_yticks([16, 48, 80], ["truth", "own audio", "other audio"])
    ax0.set_xticks([])
    ax0.set_title(f"mouth, every 2nd frame ({a.checkpoint})", fontsize=9)
    ax1 = fig.add_axes((0.11, 0.11, 0.87, 0.42))
    t = np.arange(n) / FPS
    ax1.plot(t, op["truth"], "k-", lw=1.5, label="truth")
    ax1.plot(t, op["own"], "C0-", lw=1.2, label=f"generated, own audio (r={out['own_audio_vs_truth_r']:.2f})")
    ax1.plot(t, op["swapped"], "C3--", lw=1, label=f"generated, other audio (r={out['other_audio_vs_truth_r']:.2f}; "
             f"{out['other_audio_vs_other_truth_r']:.2f} with that audio's own truth)")
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("opening (IOD, expert)")
    ax1.legend(fontsize=7, loc="upper right")
    fig.savefig(a.out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
