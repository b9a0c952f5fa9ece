"""Voice-agent latency (docs/BENCHMARKS.md#voice-agents), inside the real frameworks, offline.

    python scripts/bench/agent_latency.py [--checkpoint RUN | --random] [--runs 3] [--out docs/results/engine/agent_latency_cpu.json]

Pipecat: a pipeline (the framework's test runner) gets a TTS utterance in 100 ms chunks at
24 kHz; we time the first voiced frame out after the first audio in (TTFB), then an
InterruptionFrame mid-utterance: the last voiced frame after it (0 when none comes out) and
the first listening frame. LiveKit: the same on RTAvatarVideoGenerator (push_audio ->
first AudioFrame; clear_buffer -> first frame without audio).

Each run also breaks the first voiced frame's latency down by stage, from the session's chunk
trace (`Session.trace`): waiting to be planned, audio features, waiting for the denoiser (the
chunk in flight when the speech came), denoising, decoding + paste-back, and delivery (reader
thread, queue, the framework).
"""

import argparse
import asyncio
import json
import time

import numpy as np

from rtavatar import Avatar
from rtavatar.tts import Voice, synthesize
from rtavatar.integrations.core import resample_int16

TEXT = "Let me tell you a long story about the sea, the wind and the ships that sail on it at night."


def speech(rate: int) -> np.ndarray:
    pcm = np.round(synthesize(TEXT, Voice("en-us", 160, 45, 60)).audio * 32767).astype(np.int16)
    return resample_int16(pcm, 16000, rate)


def breakdown(face, t_push: float, t_out: float) -> dict:  # noqa: ANN001 - an AgentFace
    """Where the first voiced frame's time went (ms), from the session's chunk trace."""
    chunk = next((c for c in face.session.trace if c["state"] == "speak" and c["plan"] >= t_push), None)
    if chunk is None:
        return {}
    stamps = [t_push, chunk["plan"], chunk["features"], chunk["denoise"], chunk["denoised"], chunk["decoded"], t_out]
    names = ["to_plan", "features", "to_denoiser", "denoise", "decode", "delivery"]
    return {**{f"{n}_ms": round(1000 * (b - a), 1) for n, a, b in zip(names, stamps, stamps[1:])}, "frames": chunk["new"]}


def record_first_push(face) -> list[float]:  # noqa: ANN001 - an AgentFace
    """perf_counter() when the face's first speech push was called and when it returned (the
    Pipecat service starts its TTFB clock there), in a list filled on that push."""
    at: list[float] = []
    push = face.push_speech

    def timed(*a, **k) -> None:  # noqa: ANN002, ANN003
        t = time.perf_counter()
        push(*a, **k)
        if not at:
            at.extend([t, time.perf_counter()])

    face.push_speech = timed
    return at


def pipecat_run(avatar: Avatar, pcm: np.ndarray) -> dict:
    from pipecat.frames.frames import InterruptionFrame, TTSAudioRawFrame, TTSStartedFrame
    from pipecat.tests.utils import SleepFrame, run_test

    from rtavatar.integrations.pipecat import RTAvatarVideoService

    svc = RTAvatarVideoService(avatar=avatar)
    faces, pushed = [], []
    make = svc._make_face

    def make_and_watch():  # noqa: ANN202
        faces.append(make())
        pushed.append(record_first_push(faces[-1]))
        return faces[-1]

    svc._make_face = make_and_watch
    chunks = [TTSAudioRawFrame(audio=pcm[i : i + 2400].tobytes(), sample_rate=24000, num_channels=1) for i in range(0, len(pcm), 2400)]
    asyncio.run(run_test(svc, frames_to_send=[SleepFrame(1.0), TTSStartedFrame(), *chunks, SleepFrame(2.5), InterruptionFrame(),
                                              SleepFrame(1.0)], start_timeout=120))
    first = lambda xs: 1000 * xs[0] if xs else float("nan")  # noqa: E731 - nan: it never came
    parts = breakdown(faces[0], pushed[0][0], pushed[0][1] + svc.ttfb[0]) if svc.ttfb and pushed[0] else {}
    return {"ttfb_ms": first(svc.ttfb), "barge_in_ms": first(svc.barge_in), "listen_after_ms": first(svc.listen_after),
            "breakdown": parts}


def livekit_run(avatar: Avatar, pcm: np.ndarray) -> dict:
    from livekit import rtc

    from rtavatar.integrations.livekit import RTAvatarVideoGenerator

    async def main() -> dict:
        gen = RTAvatarVideoGenerator(avatar, sample_rate=24000)
        pushed = record_first_push(gen.face)
        it = gen.__aiter__()
        t_end = time.perf_counter() + 1.0
        while time.perf_counter() < t_end:  # idle first, as in a room
            await it.__anext__()
        t0 = time.perf_counter()
        for i in range(0, len(pcm), 2400):
            await gen.push_audio(rtc.AudioFrame(pcm[i : i + 2400].tobytes(), 24000, 1, len(pcm[i : i + 2400])))
        while not isinstance(await it.__anext__(), rtc.AudioFrame):
            pass
        t_out = time.perf_counter()
        first = t_out - t0
        parts = breakdown(gen.face, pushed[0], t_out) if pushed else {}
        t_end = time.perf_counter() + 1.5
        while time.perf_counter() < t_end:
            await it.__anext__()
        gen.clear_buffer()
        t1 = time.perf_counter()
        last_voiced, listen = 0.0, None
        prev_video = False
        while time.perf_counter() - t1 < 1.0:
            x = await it.__anext__()
            if isinstance(x, rtc.AudioFrame):
                last_voiced = time.perf_counter() - t1
            if isinstance(x, rtc.VideoFrame):
                if prev_video and listen is None:
                    listen = time.perf_counter() - t1  # a video frame not followed by audio: not speaking
                prev_video = True
            else:
                prev_video = False
        await gen.aclose()
        return {"ttfb_ms": 1000 * first, "barge_in_ms": 1000 * last_voiced, "listen_after_ms": 1000 * (listen or float("nan")),
                "breakdown": parts}

    return asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--random", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default="")
    a = p.parse_args()
    avatar = Avatar.random() if a.random else Avatar.load(a.checkpoint) if a.checkpoint else Avatar.from_pretrained()
    pcm = speech(24000)
    out = {"model": "random tiny" if a.random else a.checkpoint or "shipped", "runs": a.runs}
    for name, fn in (("pipecat", pipecat_run), ("livekit", livekit_run)):
        rows = [fn(avatar, pcm) for _ in range(a.runs)]
        out[name] = {k: round(float(np.median([r[k] for r in rows])), 1) for k in rows[0] if k != "breakdown"}
        parts = [r["breakdown"] for r in rows if r["breakdown"]]
        if parts:
            out[name]["breakdown"] = {k: round(float(np.median([p[k] for p in parts])), 1) for k in parts[0]}
        out[name + "_all"] = rows
    print(json.dumps(out, indent=1))
    if a.out:
        open(a.out, "w").write(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
