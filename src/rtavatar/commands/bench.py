"""`rtavatar bench`: stream speech through a Session as a live client would, and measure.

Two passes over the same espeak-ng speech, after a warm-up session (one-time kernel set-up
for every chunk shape, as a server does when it loads the model):

- **live pass**: audio pushed at real-time pace in 20 ms chunks, so the audio look-ahead
  counts. Gives `first_frame_ms` (first audio pushed -> frame 0 ready) and `lag_ms`, how far
  the last frame came after its audio was pushed.
With random weights (no checkpoint), up to 4 steps run the student's path (consistency
sampler, one network pass per step) and more steps the teacher's (DDIM with classifier-free
guidance on audio: two passes per step).

- **throughput pass**: all audio pushed at once, frames read as fast as they come. Gives the
  steady `fps` (frames after the first second, over the time they took), `rtf` (generation
  time / audio duration: < 1 is faster than real time) and per-stage ms per frame.

`peak_rss_mb` is the process's peak resident memory. Speed figures are of this machine only;
compare ratios measured in one run (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import platform
import resource
import threading
import time
from typing import Any

import numpy as np
import torch

from rtavatar import FPS, SAMPLE_RATE
from rtavatar.checkpoints import shipped_model
from rtavatar.diffusion import SamplingConfig
from rtavatar.engine import Avatar, ChunkSchedule, Session
from rtavatar.photo import PasteOptions

log = logging.getLogger(__name__)
BENCH_TEXT = ("Hello! I am a real-time avatar. Every frame you see was generated from this voice, "
              "one chunk at a time, while the audio was still arriving.")


def bench_speech(seconds: float) -> np.ndarray:
    """espeak-ng speech, repeated to `seconds` (falls back to a voiced-burst signal without espeak-ng)."""
    try:
        from rtavatar.tts import Voice, synthesize

        one = synthesize(BENCH_TEXT, Voice()).audio
    except Exception as e:  # noqa: BLE001 - any espeak failure: a synthetic signal still exercises every stage
        log.warning("espeak-ng unavailable (%s); benchmarking on a synthetic voiced signal", e)
        t = np.arange(int(3 * SAMPLE_RATE)) / SAMPLE_RATE
        one = (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(one)))
    return np.tile(one, reps)[: int(seconds * SAMPLE_RATE)].astype(np.float32)


def plain_portrait(r: int) -> np.ndarray:
    """A smooth colour gradient, (r, r, 3) uint8: a stand-in portrait for speed work (no face
    needed with align="center")."""
    y, x = np.mgrid[:r, :r] / r
    return (np.stack([0.6 + 0.3 * x, 0.5 + 0.2 * y, 0.4 + 0.1 * x * y], -1) * 255).astype(np.uint8)


def _session(avatar: Avatar, steps: int | None, pipeline: bool, schedule: ChunkSchedule | None,
             photo: Any = None, paste: PasteOptions | None = None) -> Session:
    if photo is not None:  # a registered photo, composited back at its own size
        return avatar.session(photo, paste=paste or PasteOptions(), steps=steps, pipeline=pipeline, schedule=schedule)
    return avatar.session(plain_portrait(avatar.resolution), align="center", steps=steps, pipeline=pipeline, schedule=schedule)


def live_pass(avatar: Avatar, audio: np.ndarray, steps: int | None, pipeline: bool,
              schedule: ChunkSchedule | None, photo: Any = None, paste: PasteOptions | None = None) -> dict[str, Any]:
    s = _session(avatar, steps, pipeline, schedule, photo, paste)
    step = SAMPLE_RATE // 50  # 20 ms
    pushed_at: list[float] = []

    def feed() -> None:
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(audio), step)):
            delay = t0 + k * step / SAMPLE_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            s.push_audio(audio[i : i + step])
            pushed_at.append(time.perf_counter())
        s.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    arrivals = [(f.index, time.perf_counter()) for f in s.frames(timeout=120)]
    feeder.join()
    # Lag of a frame: when it was ready minus when its last audio sample was pushed.
    per_push = FPS * step / SAMPLE_RATE  # frames of audio per push (0.5)
    lags = [t - pushed_at[min(len(pushed_at) - 1, int(np.ceil((i + 1) / per_push)) - 1)] for i, t in arrivals]
    return {"first_frame_ms": round(s.first_frame_ms or float("nan"), 1), "lag_ms": round(1000 * float(np.median(lags)), 1),
            "frames_live": len(arrivals)}


def throughput_pass(avatar: Avatar, audio: np.ndarray, steps: int | None, pipeline: bool,
                    schedule: ChunkSchedule | None, photo: Any = None, paste: PasteOptions | None = None) -> dict[str, Any]:
    s = _session(avatar, steps, pipeline, schedule, photo, paste)
    t0 = time.perf_counter()
    s.push_audio(audio)
    s.close()
    times = [time.perf_counter() for _ in s.frames(timeout=600)]
    total = times[-1] - t0
    skip = min(FPS, len(times) // 2)  # steady state: after the first second's short chunks
    fps = (len(times) - skip) / max(times[-1] - times[skip - 1], 1e-9) if skip else len(times) / total
    return {"fps": round(fps, 2), "rtf": round(total / (len(audio) / SAMPLE_RATE), 3), "frames": len(times),
            "stage_ms_per_frame": s.times.per_frame_ms()}


def run_bench(*, checkpoint: str | None = None, config: str | None = None, steps: int | None = None, quantize: str = "fp32",
              pipeline: bool = True, seconds: float = 10.0, threads: int = 0, backend: str = "torch",
              schedule: ChunkSchedule | None = None, photo: str | None = None,
              paste: PasteOptions | None = None) -> dict[str, Any]:
    """`photo`: register this picture (dlib alignment) and composite every frame back into it
    with the photo renderer's `paste` options (None: the defaults, as a live session takes them)."""
    paste = paste or PasteOptions()
    if threads:
        torch.set_num_threads(threads)
    if checkpoint:
        avatar, model = Avatar.load(checkpoint, precision=quantize), str(checkpoint)
    else:
        shipped = None if config else shipped_model()
        if shipped is not None:
            avatar, model = Avatar.load(shipped, precision=quantize), f"shipped ({shipped})"
        else:
            avatar, model = Avatar.random(config or "tiny", precision=quantize), f"random weights, {config or 'tiny'} config"
            log.info("bench: %s (no checkpoint given%s)", model, "" if config else " and no shipped model")
            if steps and steps > 4:  # random weights: many steps means the teacher's path
                avatar.bundle.cfg.sampling = SamplingConfig(sampler="ddim", steps=steps, guidance=2.0)
    if backend == "onnxruntime":
        from rtavatar.engine.onnx import use_onnxruntime

        use_onnxruntime(avatar)
    elif backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; use torch or onnxruntime")
    audio = bench_speech(seconds)
    portrait = avatar.portrait(photo) if photo else None
    warm = _session(avatar, steps, pipeline, schedule, portrait, paste)  # one-time kernel set-up for every chunk shape
    warm.push_audio(audio[: 3 * SAMPLE_RATE])
    warm.close()
    for _ in warm.frames(timeout=600):
        pass
    live = live_pass(avatar, audio, steps, pipeline, schedule, portrait, paste)
    thr = throughput_pass(avatar, audio, steps, pipeline, schedule, portrait, paste)
    sampling = avatar.sampler(steps).sampling
    return {"model": model, "steps": sampling.steps, "sampler": sampling.sampler, "cfg": not sampling.guidance_input, "resolution": avatar.resolution,
            "quantize": quantize, "pipeline": pipeline, "backend": backend, "seconds": seconds,
            "photo": None if portrait is None else {"path": str(photo), "size": list(portrait.image.shape[1::-1]),
                                                    "face_px": portrait.box[2], "paste": paste.to_dict()},
            "device": _device_name(avatar), "threads": torch.get_num_threads(), **thr, **live,
            "lookahead_ms": round(warm.lookahead_ms, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _device_name(avatar: Avatar) -> str:
    dev = next(avatar.bundle.net.parameters()).device
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
