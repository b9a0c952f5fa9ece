"""Do state changes pop? (docs/BENCHMARKS.md#state-transitions)

    python scripts/bench/transitions.py [--checkpoint RUN] [--image photo.jpg] [--raw] [--out docs/results/engine/transitions_cpu.json]

One Session on a photo (the shipped model by default) says the bundled speech while the
state is set every two seconds (SWITCHES: speak, listen, idle, speak, auto, listen, auto), as
a dialogue agent would. Per frame, the mean absolute change from the frame before (0-255)
over the mouth region of the photo composite (dlib's mouth points with half a mouth width
around them) or, `--raw`, over the lower half of the generated 128 px face itself. A pop is
a transition frame whose change stands out from the frames around it: `ratio` = change at
the transition (the larger of its first two frames) / the 95th percentile of the changes
within the states on either side (±25 frames, the transition's own left out). Below 1 the
switch is no larger than ordinary motion.
"""

import argparse
import json
from importlib.resources import files

import numpy as np

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, Avatar
from rtavatar.media import read_audio
from rtavatar.photo.options import PasteOptions

SWITCHES = ["speak", "listen", "idle", "speak", "auto", "listen", "auto"]  # one every SEG seconds
SEG = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--image", default=str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg"))
    ap.add_argument("--raw", action="store_true", help="score the generated 128 px face itself, not the photo composite")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    avatar = Avatar.load(a.checkpoint) if a.checkpoint else Avatar.from_pretrained()
    p = avatar.portrait(a.image)
    speech = read_audio(str(files("rtavatar") / "assets" / "speech" / "hello.wav"))
    n_seg = int(SEG * SAMPLE_RATE)
    audio = np.tile(speech, int(np.ceil(len(SWITCHES) * n_seg / len(speech))))[: len(SWITCHES) * n_seg]
    s = avatar.session(p, paste=None if a.raw else PasteOptions(), state=SWITCHES[0])
    for k, state in enumerate(SWITCHES):
        if k:
            s.set_state(state)
        s.push_audio(audio[k * n_seg : (k + 1) * n_seg])
    s.close()
    frames = list(s.frames(timeout=600))
    h, w = frames[0].image.shape[:2]
    if a.raw:  # the lower half of the generated face: where the mouth and jaw move
        x0, y0, x1, y1 = 0, h // 2, w, h
    else:  # the mouth (dlib points 48-67) with half its width around it
        m = p.landmarks[48:68]
        mw = m[:, 0].max() - m[:, 0].min()
        x0, x1 = int(max(m[:, 0].min() - mw / 2, 0)), int(min(m[:, 0].max() + mw / 2, w))
        y0, y1 = int(max(m[:, 1].min() - mw / 2, 0)), int(min(m[:, 1].max() + mw / 2, h))
    crops = np.stack([f.image[y0:y1, x0:x1].astype(np.float32) for f in frames])
    change = np.r_[0.0, np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2, 3))]
    states = [f.state for f in frames]
    rows = []
    for k in range(1, len(SWITCHES)):
        t = int(k * SEG * FPS)  # where set_state(SWITCHES[k]) takes effect
        around = [i for i in range(max(1, t - 25), min(len(frames), t + 25)) if not t - 1 <= i <= t + 1]
        base = float(np.percentile(change[around], 95))
        pop = float(change[t : t + 2].max())
        rows.append({"frame": t, "set": f"{SWITCHES[k - 1]} -> {SWITCHES[k]}", "from": states[t - 1], "to": states[t], "change": round(pop, 2),
                     "p95_around": round(base, 2), "ratio": round(pop / max(base, 1e-6), 2)})
    summary = {"checkpoint": a.checkpoint or "shipped", "image": a.image, "scored": "raw face" if a.raw else "photo composite", "frames": len(frames),
               "frames_expected": len(audio) // SAMPLES_PER_FRAME, "box": [int(v) for v in (x0, y0, x1, y1)],
               "median_change": round(float(np.median(change[1:])), 2), "transitions": rows,
               "max_ratio": max((r["ratio"] for r in rows), default=float("nan"))}
    for r in rows:
        print(f"frame {r['frame']:4d} {r['set']:>16} ({r['from']} -> {r['to']}) change {r['change']:6.2f}  "
              f"p95 around {r['p95_around']:6.2f}  ratio {r['ratio']:.2f}")
    print(json.dumps({k: v for k, v in summary.items() if k != "transitions"}))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
