"""Do the lips close for b, p and m? The person's, the MotionNet's and the rendered mouth's
inner-lip gap at the start of words that begin with a bilabial, against words that do not.

    python scripts/bench/bilabials.py ../shared/realvid --cache data/realvid_tracks.npz [--model photo-v8] [--render]

Word timings come from Whisper tiny.en (faster-whisper, the CTranslate2 model the package
ships; `word_timestamps`, accurate to about 50-100 ms). Per word, on a gap series less its
5th percentile (the closed mouth): the closure is the smallest gap over the frames from 3
before the word's start to 1 after it (the lips shut before the release), the opening the
largest over the word; the ratio closure / opening is near 0 where the lips close. Words are
bilabial-initial by spelling (b, p, m; one-letter words left out), the control words begin
with anything but b, p, m, f, v, w (and "one"). Series: the person (dlib), the MotionNet alone
(the session's windows, `shape_gap` of its offsets) and, with `--render`, the shipped renderer
on the clip's first-second portrait (as `eval --videos`, seed 0; `--head-motion 0`: a still head). Our measure, not a published one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.checkpoints import load_motion
from rtavatar.engine.motion import ArrayTimeline, MotionTrack
from rtavatar.evaluation.videos import Track, features, list_videos, pick_portrait, read_clip, track_faces
from rtavatar.models.audio import whisper_model_dir
from rtavatar.models.motion import shape_gap

sys.path.insert(0, str(Path(__file__).parent))
from motion_ceiling import real_tracks  # noqa: E402

BILABIAL = ("b", "p", "m")
NOT_CONTROL = ("b", "p", "m", "f", "v", "w")


def words(model, audio: np.ndarray) -> list[tuple[str, int, int]]:  # noqa: ANN001 - faster_whisper.WhisperModel
    """(word, first frame, last frame) of each alphabetic word Whisper hears."""
    segs, _ = model.transcribe(audio, language="en", word_timestamps=True, beam_size=1)
    out = []
    for s in segs:
        for w in s.words or []:
            text = re.sub(r"[^a-z]", "", w.word.lower())
            if text:
                out.append((text, int(round(w.start * FPS)), int(round(w.end * FPS))))
    return out


def ratios(gap: np.ndarray, spans: list[tuple[str, int, int]]) -> dict[str, list[float]]:
    g = gap - np.nanpercentile(gap, 5)
    out: dict[str, list[float]] = {"bilabial": [], "control": []}
    for text, a, b in spans:
        kind = ("bilabial" if text.startswith(BILABIAL) else None if text.startswith(NOT_CONTROL) or text == "one" else "control")
        if kind is None or len(text) < 2 or a >= len(g):
            continue
        closure = np.nanmin(g[max(a - 3, 0) : min(a + 2, len(g))])
        opening = np.nanmax(g[a : min(max(b, a + 1) + 1, len(g))])
        if np.isfinite(closure) and np.isfinite(opening) and opening > 1e-3:
            out[kind].append(float(closure / opening))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos")
    ap.add_argument("--cache", type=Path, default=None, help="dlib tracks (scripts/bench/motion_ceiling.py's cache file)")
    ap.add_argument("--model", default=None, help="a model with a MotionNet (default: the shipped one)")
    ap.add_argument("--render", action="store_true", help="also the rendered mouth (slow: each clip is generated)")
    ap.add_argument("--head-motion", type=float, default=None, help="with --render: the sway's scale (0: a still head; default the shipped)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from faster_whisper import WhisperModel

    from rtavatar.checkpoints import shipped_model
    from rtavatar.photo.align import FaceAnalyzer
    from rtavatar.photo.options import PasteOptions

    model_dir = args.model or str(shipped_model())
    net = load_motion(model_dir).eval()
    asr = WhisperModel(whisper_model_dir(""), device="cpu", compute_type="int8", cpu_threads=2)
    videos = list_videos(args.videos)
    tracks = real_tracks(videos, args.cache)
    fa, avatar = FaceAnalyzer(), None
    pooled: dict[str, dict[str, list[float]]] = {}
    for path in videos:
        pts, audio = tracks[path.name]
        n = min(len(pts), len(audio) // SAMPLES_PER_FRAME)
        spans = words(asr, audio)
        series = {"person": features(pts[:n])["gap"],
                  "net": shape_gap(MotionTrack(net).clip_offsets(ArrayTimeline(audio), n, 6), net.cfg.points)}
        if args.render:
            from rtavatar.engine import Avatar

            avatar = avatar or Avatar.load(model_dir)
            k = pick_portrait(Track(pts, np.isfinite(pts).all((1, 2)), {}))
            gen = avatar.generate(avatar.portrait(read_clip(path)[0][k]), audio, paste=PasteOptions(head_motion=args.head_motion), seed=0)[:n]
            series["rendered"] = features(track_faces(gen, fa).points)["gap"]
        line = []
        for name, gap in series.items():
            r = ratios(np.asarray(gap, float), spans)
            for kind, v in r.items():
                pooled.setdefault(name, {}).setdefault(kind, []).extend(v)
            line.append(f"{name} {np.median(r['bilabial']) if r['bilabial'] else float('nan'):.2f}/"
                        f"{np.median(r['control']) if r['control'] else float('nan'):.2f}")
        print(f"{path.name:28s} words {len(spans):3d}  closure/opening, bilabial/control: " + "  ".join(line), flush=True)
    summary = {name: {kind: {"words": len(v), "median": float(np.median(v)) if v else None,
                             "closed": float(np.mean(np.array(v) < 0.25)) if v else None} for kind, v in r.items()}
               for name, r in pooled.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"videos": str(args.videos), "model": model_dir, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
