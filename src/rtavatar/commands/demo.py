"""`rtavatar demo`: the main job.

The shipped network (`Avatar.from_pretrained()`) animates the bundled sample photo with the
bundled espeak-ng speech (or `--image` / `--audio` / `--text`) and writes an mp4 at the
photo's own size. `--synthetic` instead renders the procedural talking-face generator (the
training data; no network).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtavatar import FPS
from rtavatar.assets import SAMPLE_PORTRAIT, SAMPLE_SPEECH
from rtavatar.data.behavior import PlacedUtterance, Timeline, frame_signals, identity_voice, render_audio
from rtavatar.data.face import Renderer, sample_identity
from rtavatar.data.synth import render_frames
from rtavatar.media import write_video
from rtavatar.tts import Voice, synthesize

log = logging.getLogger(__name__)

DEFAULT_TEXT = (
    "Hello! I am a synthetic talking face. My lips follow the phonemes of this sentence, "
    "and soon a one step diffusion model will learn to do the same from any portrait."
)


def talking_clip(text: str, identity_seed: int, lead_in: float = 0.6, tail: float = 1.2) -> tuple[Timeline, dict[str, np.ndarray], np.ndarray]:
    """An idle lead-in, the sentence spoken, then a listening tail; returns timeline, signals, audio."""
    voice = identity_voice(identity_seed)
    utt = synthesize(text, voice)
    end = lead_in + utt.duration
    duration = end + tail
    tl = Timeline(duration=duration, segments=[("idle", 0.0, lead_in), ("speak", lead_in, end), ("listen", end, duration)],
                  utterances=[PlacedUtterance(utt, lead_in, "self")], voice=voice)
    sig = frame_signals(tl, np.random.default_rng(identity_seed))
    return tl, sig, render_audio(tl, "self")


def run_network_demo(out: str | Path = "demo.mp4", image: str | Path | None = None, audio: str | Path | None = None,
                     text: str | None = None, checkpoint: str | None = None, precision: str = "fp32") -> dict[str, Any]:
    """The shipped model (or `checkpoint`) animating a photo with speech; writes an mp4."""
    from rtavatar.engine import Avatar
    from rtavatar.engine.files import write_generated
    from rtavatar.media import read_audio

    t0 = time.perf_counter()
    if text:
        pcm = np.concatenate([np.zeros(8000, np.float32), synthesize(text, Voice("en-us", 160, 45, 60)).audio,
                              np.zeros(8000, np.float32)])
    else:
        pcm = read_audio(audio or SAMPLE_SPEECH)
    avatar = Avatar.load(checkpoint, precision=precision) if checkpoint else Avatar.from_pretrained(precision=precision)
    n = write_generated(out, avatar, str(image or SAMPLE_PORTRAIT), pcm, paste=True)
    elapsed = time.perf_counter() - t0
    log.info("wrote %s: %d frames in %.1f s", out, n, elapsed)
    return {"out": str(out), "frames": n, "seconds": round(n / FPS, 2), "elapsed_seconds": round(elapsed, 2),
            "source": f"network: {avatar.bundle.checkpoint}"}


def run_demo(out: str | Path = "demo.mp4", text: str | None = None, seed: int = 7, resolution: int = 256) -> dict[str, Any]:
    """The procedural generator's talking clip (no network)."""
    t0 = time.perf_counter()
    tl, sig, audio = talking_clip(text or DEFAULT_TEXT, seed)
    renderer = Renderer(sample_identity(seed), resolution)
    n = write_video(out, render_frames(renderer, sig), audio, fps=FPS, crf=18)
    elapsed = time.perf_counter() - t0
    log.info("wrote %s: %d frames (%.1f s) at %dx%d in %.1f s", out, n, n / FPS, resolution, resolution, elapsed)
    return {"out": str(out), "frames": n, "seconds": round(n / FPS, 2), "elapsed_seconds": round(elapsed, 2), "source": "synthetic-generator"}
