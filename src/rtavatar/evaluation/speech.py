"""`rtavatar eval --speech DIR`: does the mouth open in speech and rest in pauses, on real voices?

Per recording (any format `media.read_audio` takes; mono-mixed, resampled to 16 kHz): one
photo (the bundled sample unless `--image`) animated with it (paste-back on, the CLI's
renderer options), dlib's inner-lip gap (IOD, `photo.landmarks.inner_gap`) read on every
frame, and silero-vad's speech probability per 40 ms frame (the most of its 32 ms windows
that overlap the frame). Speech frames: probability > 0.5. A pause: a run of non-speech
frames longer than PAUSE_MS; its inner frames (EDGE frames at each end left out, where lips
close into and open out of the pause) are `at rest` when their median gap is within
REST_TOLERANCE of the photo's own gap. Per file:

- `speech_gap`, `pause_gap`: mean gap above the photo's own over speech / pause frames;
- `ratio`: mean gap over speech frames / over non-speech frames (both absolute; target >= 1.5);
  `silent_frames`: how many non-speech frames (with a face) that rests on: a recording that is
  nearly all speech has a few, the gaps between words, and its ratio says little;
- `pauses`, `pauses_at_rest`: long pauses, and how many of them rest (target: all);
- `worst_pause`: the largest median gap above rest in a long pause.

These are our measures with dlib and silero-vad, not a published metric; the recordings
carry no video, so they say nothing about *which* shape the mouth takes, only when it moves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError
from rtavatar.evaluation.photos import list_files
from rtavatar.evaluation.videos import features, track_faces
from rtavatar.media import read_audio
from rtavatar.photo.align import FaceAnalyzer
from rtavatar.photo.landmarks import inner_gap
from rtavatar.photo.options import PasteOptions

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".aiff", ".aif", ".m4a", ".opus")
PAUSE_MS, EDGE, REST_TOLERANCE = 300.0, 2, 0.03
COLUMNS = ("seconds", "speech_fraction", "speech_gap", "pause_gap", "ratio", "silent_frames", "pauses", "pauses_at_rest", "worst_pause")


def speech_frames(audio: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool: silero-vad's probability > 0.5 in any 32 ms window overlapping the frame."""
    from rtavatar.engine.vad import SileroStream, frame_speech

    return frame_speech(np.asarray(SileroStream().push(np.pad(audio, (0, max(0, n * SAMPLES_PER_FRAME - len(audio)))))), n)


def pauses(speech: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """[a, b) runs of non-speech frames at least `min_frames` long."""
    runs, start = [], None
    for i, s in enumerate(list(speech) + [True]):
        if not s and start is None:
            start = i
        elif s and start is not None:
            if i - start >= min_frames:
                runs.append((start, i))
            start = None
    return runs


def score_speech(gap: np.ndarray, speech: np.ndarray, rest: float) -> dict[str, float]:
    """The module docstring's measures from (n,) gaps (NaN: no face) and speech flags."""
    ok = np.isfinite(gap)
    above = gap - rest
    mean = lambda m: float(np.mean(above[m & ok])) if (m & ok).any() else float("nan")  # noqa: E731
    long = pauses(speech, int(np.ceil(PAUSE_MS / 1000 * FPS)) + 1)
    medians = []
    for a, b in long:
        inner = above[a + EDGE : b - EDGE]
        inner = inner[np.isfinite(inner)]
        medians.append(float(np.median(inner)) if len(inner) else float("nan"))
    silent = ~speech & ok
    silent_gap = float(np.mean(gap[silent])) if silent.any() else float("nan")
    speech_gap = float(np.mean(gap[speech & ok])) if (speech & ok).any() else float("nan")
    return {"speech_fraction": float(speech.mean()), "speech_gap": mean(speech), "pause_gap": mean(~speech),
            "ratio": speech_gap / silent_gap if silent_gap > 1e-6 else float("inf") if speech_gap > 0 else float("nan"),
            "silent_frames": int(silent.sum()),
            "pauses": len(long), "pauses_at_rest": int(sum(m <= REST_TOLERANCE for m in medians if np.isfinite(m))),
            "worst_pause": max(medians) if medians else float("nan")}


def list_speech(root: str | Path) -> list[Path]:
    return list_files(root, AUDIO_SUFFIXES, "--speech", "audio files")


def evaluate_speech(avatar: Any, files: list[Path], portrait: Any, *, paste: PasteOptions | None = None,
                    steps: int | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Rows per recording (an unreadable one gets a row with "error") for `portrait` (a path,
    image or Portrait) animated with each."""
    paste = paste or PasteOptions()
    fa = FaceAnalyzer()
    p = avatar.portrait(portrait) if not hasattr(portrait, "face") else portrait
    rest = inner_gap(p.landmarks) if p.landmarks is not None else 0.0
    rows: list[dict[str, Any]] = []
    for path in tqdm(files, desc="speech", disable=not progress):
        try:
            audio = read_audio(path)
            if not np.abs(audio).max() > 1e-4:
                raise RTAvatarError("the recording is silent")
            frames = avatar.generate(p, audio, paste=paste, steps=steps, seed=seed)
            gap = features(track_faces(frames, fa).points)["gap"]
            row = {"file": path.name, "seconds": round(len(audio) / SAMPLE_RATE, 2), **score_speech(gap, speech_frames(audio, len(frames)), rest)}
        except RTAvatarError as e:
            rows.append({"file": path.name, "error": " ".join(str(e).split())})
            log.warning("%s: %s", path.name, e)
            continue
        rows.append(row)
    return {"rows": rows, "paste": paste.to_dict(), "rest_gap": rest, "seed": seed}


def format_speech_table(result: dict[str, Any]) -> str:
    lines = ["| file | s | speech | gap in speech / pauses (above rest, IOD) | speech/silence opening (non-speech frames) | pauses > 300 ms at rest |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['file']} | error: {r['error']} |")
            continue
        f = lambda k, fmt="{:.3f}": "–" if r.get(k) is None or not np.isfinite(r[k]) else fmt.format(r[k])  # noqa: E731
        lines.append(f"| {r['file']} | {r['seconds']:.1f} | {r['speech_fraction']:.0%} | {f('speech_gap')} / {f('pause_gap')} | "
                     f"{f('ratio', '{:.1f}')} ({r.get('silent_frames', '–')}) | {r['pauses_at_rest']} of {r['pauses']} (worst {f('worst_pause')}) |")
    return "\n".join(lines)
