"""Does a real person pass `rtavatar eval --speech`'s measures? Each real clip's own mouth (dlib's
inner-lip gap on the person) scored against its own audio by evaluation/speech.score_speech,
as the generated mouth is: the speech/silence opening ratio (target >= 1.5) and the long pauses
at rest, with the person's rest taken as their 5th-percentile gap; and the ratio again with
silence counted only 2 frames or more away from speech, beside how many such frames there are.

    python scripts/bench/speech_measure_on_people.py ../shared/realvid [--cache tracks.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

sys.path.insert(0, str(Path(__file__).parent))
from motion_ceiling import real_tracks  # noqa: E402

from rtavatar.evaluation.speech import score_speech, speech_frames  # noqa: E402
from rtavatar.evaluation.videos import features, list_videos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("videos")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    print("| clip | speech | speech/silence opening | pauses > 300 ms at rest | frames 2+ from speech | opening ratio on those |")
    print("|---|---|---|---|---|---|")
    for name, (pts, audio) in real_tracks(list_videos(args.videos), args.cache).items():
        gap = features(pts)["gap"]
        ok, speech = np.isfinite(gap), speech_frames(audio, len(gap))
        s = score_speech(gap, speech, float(np.nanpercentile(gap, 5)))
        quiet = ~binary_dilation(speech, iterations=2) & ok
        far = float(np.mean(gap[speech & ok]) / np.mean(gap[quiet])) if quiet.any() else float("nan")
        print(f"| {name} | {s['speech_fraction']:.0%} | {s['ratio']:.2f} | {s['pauses_at_rest']} of {s['pauses']} | "
              f"{int(quiet.sum())} | {far:.2f} |")


if __name__ == "__main__":
    main()
