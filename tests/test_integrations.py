"""Voice-agent integrations, run inside the real frameworks (offline): Pipecat and LiveKit Agents."""

from __future__ import annotations

import asyncio
from importlib.resources import files

import numpy as np
import pytest

from rtavatar import FPS, SAMPLE_RATE
from rtavatar.engine import Avatar
from rtavatar.integrations.core import AgentFace, resample_int16
from rtavatar.media import read_audio

LISA = str(files("rtavatar") / "assets" / "portraits" / "lisa.jpg")
SPEECH = str(files("rtavatar") / "assets" / "speech" / "hello.wav")


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return Avatar.random("tiny", seed=0)


def tts_audio(seconds: float, rate: int) -> np.ndarray:
    """A recorded utterance (the bundled espeak-ng speech) as int16 at `rate`."""
    a = read_audio(SPEECH)[int(0.5 * SAMPLE_RATE) : int((0.5 + seconds) * SAMPLE_RATE)]
    return resample_int16(np.round(a * 32767).astype(np.int16), SAMPLE_RATE, rate)


def test_agent_face_aligns_output_audio_with_frames(avatar: Avatar) -> None:
    face = AgentFace(avatar, LISA, out_rate=24000)
    speech = tts_audio(1.0, 22050)  # a TTS rate that is not the output's
    for i in range(0, len(speech), 2205):
        face.push_speech(speech[i : i + 2205].tobytes(), 22050)
    face.end_speech()
    face.close()
    frames = []
    while (f := face.next_frame(timeout=60)) is not None:
        frames.append(f)
    voiced = [f for f in frames if f.voiced]
    assert len(voiced) == int(np.ceil(1.0 * FPS)) and all(len(f.audio) == 960 for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    out = np.concatenate([f.audio for f in voiced]).astype(np.float32)
    ref = resample_int16(speech, 22050, 24000).astype(np.float32)
    n = min(len(out), len(ref))
    assert np.corrcoef(out[:n], ref[:n])[0, 1] > 0.99  # the agent's own audio, aligned, not a 16 kHz copy


def test_agent_face_speech_starts_right_after_the_idle_frames_shown(avatar: Avatar) -> None:
    """A new utterance must not queue behind idle silence already pushed or idle frames already
    made: its first voiced frame follows the last frame read (the first-voiced-frame latency)."""
    import threading
    import time

    face = AgentFace(avatar, LISA, out_rate=24000)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: face.next_frame(timeout=60), None)), daemon=True)
    reader.start()
    t_end = time.perf_counter() + 60
    while len(got) < 10 and time.perf_counter() < t_end:  # idle between turns, at the live pace
        face.tick()
        time.sleep(0.02)
    read_before = len(got)
    face.push_speech(tts_audio(0.6, 24000).tobytes(), 24000)
    face.end_speech()
    face.close()
    reader.join(timeout=120)
    assert read_before >= 10, "idle frames flowed before the utterance"
    assert [f.index for f in got] == list(range(len(got))), "one timeline: nothing shown is taken back, no gap"
    first = next(f.index for f in got if f.voiced)
    assert first - read_before <= 1, f"speech came {first - read_before} frames after the last idle frame read"
    assert sum(f.voiced for f in got) == int(np.ceil(0.6 * FPS))
    assert len(face._out) <= 960, "audio already read is forgotten (a long session stays small)"


def test_agent_face_back_to_back_utterances_are_both_said(avatar: Avatar) -> None:
    """TTS runs ahead of real time, one utterance per sentence: the second must queue after
    the first, not cut what of the first is not yet shown."""
    face = AgentFace(avatar, LISA, out_rate=24000)
    a, b = tts_audio(0.8, 24000), tts_audio(0.6, 24000)
    face.push_speech(a.tobytes(), 24000)
    end_a = face.end_speech()
    face.push_speech(b.tobytes(), 24000)  # before any frame is read
    end_b = face.end_speech()
    face.close()
    frames = []
    while (f := face.next_frame(timeout=60)) is not None:
        frames.append(f)
    assert [f.utterance for f in frames if f.voiced] == [1] * int(np.ceil(0.8 * FPS)) + [2] * int(np.ceil(0.6 * FPS))
    assert end_a == int(np.ceil(0.8 * FPS)) and end_b == end_a + int(np.ceil(0.6 * FPS))
    said = np.concatenate([f.audio for f in frames if f.voiced])
    assert np.array_equal(said[: len(a)], a) and np.array_equal(said[960 * end_a : 960 * end_a + len(b)], b)
    with pytest.raises(Exception, match="closed"):
        face.push_speech(b.tobytes(), 24000)


def test_agent_face_frame_taken_just_before_an_interrupt_is_stale(avatar: Avatar) -> None:
    """The reader thread takes a frame from the Session, then the agent barges in before the
    face stamps it: that frame is of the dropped turn (its epoch is not the face's), while the
    frames after the cut are current and silent. Reproduces the window deterministically."""
    face = AgentFace(avatar, LISA, out_rate=24000)
    face.push_speech(tts_audio(2.0, 24000).tobytes(), 24000)
    face.end_speech()
    real_frames = face.session.frames

    def frames_with_barge_in(timeout: float | None = None):  # noqa: ANN202
        for f in real_frames(timeout=timeout):
            if f.index == 5:
                face.interrupt()  # between the Session handing frame 5 out and the face stamping it
            yield f

    face.session.frames = frames_with_barge_in  # type: ignore[method-assign]
    got = [face.next_frame(timeout=60) for _ in range(6)]
    face.session.frames = real_frames  # type: ignore[method-assign]
    face.tick()  # the face listens: idle frames follow at the cut
    after = face.next_frame(timeout=60)
    face.cancel()
    assert all(f is not None and f.voiced for f in got)
    assert [f.epoch == face.epoch for f in got] == [False] * 6, "every frame of the dropped turn is stale"
    assert after is not None and after.index == 6 and after.epoch == face.epoch and not after.voiced


# ---------------------------------------------------------------------------- Pipecat
def _pipecat_frames():  # noqa: ANN202
    pytest.importorskip("pipecat")
    from pipecat.frames import frames as pf

    return pf


def run_pipecat(avatar: Avatar, frames_to_send: list) -> tuple[list, object]:
    from pipecat.tests.utils import run_test

    from rtavatar.integrations.pipecat import RTAvatarVideoService

    svc = RTAvatarVideoService(avatar=avatar, portrait=LISA)
    down, _ = asyncio.run(run_test(svc, frames_to_send=frames_to_send, start_timeout=60))
    return down, svc


def test_pipecat_utterance_becomes_audio_synced_frames(avatar: Avatar) -> None:
    pf = _pipecat_frames()
    from pipecat.tests.utils import SleepFrame

    speech = tts_audio(2.0, 24000)
    chunks = [pf.TTSAudioRawFrame(audio=speech[i : i + 2400].tobytes(), sample_rate=24000, num_channels=1)
              for i in range(0, len(speech), 2400)]
    down, svc = run_pipecat(avatar, [SleepFrame(0.3), pf.TTSStartedFrame(), *chunks, pf.TTSStoppedFrame(), SleepFrame(1.5)])
    images = [f for f in down if isinstance(f, pf.OutputImageRawFrame)]
    assert images and all(f.sync_with_audio for f in images)
    # Every image is followed by exactly the audio it shows: 1/25 s at the output rate.
    for i, f in enumerate(down[:-1]):
        if isinstance(f, pf.OutputImageRawFrame):
            nxt = down[i + 1]
            assert isinstance(nxt, pf.OutputAudioRawFrame) and len(nxt.audio) == 2 * 24000 // FPS
            assert f.size == (300, 400) and len(f.image) == 300 * 400 * 3
    voiced = [f for f in down if type(f) is pf.TTSAudioRawFrame]
    assert len(voiced) == int(np.ceil(2.0 * FPS))  # one frame per 1/25 s of the utterance
    passed = np.frombuffer(b"".join(f.audio for f in voiced), np.int16)[: len(speech)]
    assert np.array_equal(passed, speech)  # the TTS audio is passed on, sample for sample
    # Idle / listening frames keep the face alive between turns (whether any follow the
    # utterance inside the test's 1.5 s depends on the machine's speed, so only those before it count).
    silent = [f for f in down if type(f) is pf.OutputAudioRawFrame]
    # (how many before depends on the speed: idle frames not yet read when speech starts are cut)
    assert silent and not np.frombuffer(silent[0].audio, np.int16).any()
    stops = [i for i, f in enumerate(down) if isinstance(f, pf.TTSStoppedFrame)]
    last_voiced = max(i for i, f in enumerate(down) if type(f) is pf.TTSAudioRawFrame)
    assert len(stops) == 1 and stops[0] > last_voiced  # TTSStopped travels after the utterance's last frame
    assert len(svc.ttfb) == 1 and svc.ttfb[0] > 0


def test_pipecat_interruption_stops_voiced_frames(avatar: Avatar) -> None:
    pf = _pipecat_frames()
    from pipecat.tests.utils import SleepFrame

    speech = tts_audio(6.0, 24000)
    chunks = [pf.TTSAudioRawFrame(audio=speech[i : i + 4800].tobytes(), sample_rate=24000, num_channels=1)
              for i in range(0, len(speech), 4800)]
    down, svc = run_pipecat(avatar, [pf.TTSStartedFrame(), *chunks, SleepFrame(2.0), pf.InterruptionFrame(), SleepFrame(0.8)])
    cut = next(i for i, f in enumerate(down) if isinstance(f, pf.InterruptionFrame))
    before = sum(type(f) is pf.TTSAudioRawFrame for f in down[:cut])
    after = [f for f in down[cut:] if isinstance(f, pf.OutputAudioRawFrame)]
    assert 0 < before < 6 * FPS  # it was mid-utterance
    assert after and not any(type(f) is pf.TTSAudioRawFrame for f in after)  # nothing voiced after the barge-in
    assert svc.barge_in == [0.0] and len(svc.listen_after) == 1


# ---------------------------------------------------------------------------- LiveKit Agents
def _collect(gen, stop, timeout: float = 60.0):  # noqa: ANN001, ANN202 - iterate until stop(items) or timeout
    async def run() -> list:
        items: list = []
        async def consume() -> None:
            async for x in gen:
                items.append(x)
                if stop(items):
                    return
        await asyncio.wait_for(consume(), timeout)
        return items
    return run


def test_livekit_generator_contract(avatar: Avatar) -> None:
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd, QueueAudioOutput

    from rtavatar.integrations.livekit import RTAvatarVideoGenerator

    async def main() -> list:
        gen = RTAvatarVideoGenerator(avatar, LISA, sample_rate=48000)
        out = QueueAudioOutput(sample_rate=48000)  # the in-process shape: the agent's audio output
        speech = tts_audio(1.5, 48000)

        async def agent() -> None:
            await asyncio.sleep(0.3)
            for i in range(0, len(speech), 4800):
                await out.capture_frame(rtc.AudioFrame(speech[i : i + 4800].tobytes(), 48000, 1, len(speech[i : i + 4800])))
            out.flush()

        async def runner_reads() -> None:  # what AvatarRunner._read_audio does
            async for f in out:
                await gen.push_audio(f)

        tasks = [asyncio.create_task(agent()), asyncio.create_task(runner_reads())]
        def done(it: list) -> bool:  # 10 idle frames after the segment's end
            ends = [i for i, x in enumerate(it) if isinstance(x, AudioSegmentEnd)]
            return bool(ends) and sum(isinstance(x, rtc.VideoFrame) for x in it[ends[0]:]) >= 10

        items = await _collect(gen, done)()
        for t in tasks:
            t.cancel()
        await gen.aclose()
        return items

    items = asyncio.run(main())

    audio_idx = [i for i, x in enumerate(items) if isinstance(x, rtc.AudioFrame)]
    assert len(audio_idx) == int(np.ceil(1.5 * FPS))
    for i in audio_idx:  # each audio frame follows its video frame, exactly 1/25 s of 48 kHz audio
        assert isinstance(items[i - 1], rtc.VideoFrame) and items[i].samples_per_channel == 48000 // FPS
    ends = [i for i, x in enumerate(items) if isinstance(x, AudioSegmentEnd)]
    assert len(ends) == 1 and ends[0] == audio_idx[-1] + 1  # the segment end is echoed after its last frame
    idle = [x for x in items[: audio_idx[0]] if isinstance(x, rtc.VideoFrame)]
    assert idle and idle[0].width == 300 and idle[0].height == 400  # idle video before the agent spoke
    played = np.frombuffer(b"".join(bytes(items[i].data) for i in audio_idx), np.int16)
    assert np.array_equal(played[: len(tts_audio(1.5, 48000))], tts_audio(1.5, 48000))


def test_livekit_clear_buffer_drops_the_rest_of_the_segment(avatar: Avatar) -> None:
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from rtavatar.integrations.livekit import RTAvatarVideoGenerator

    async def main() -> tuple[list, list]:
        gen = RTAvatarVideoGenerator(avatar, LISA, sample_rate=24000)
        speech = tts_audio(6.0, 24000)
        await gen.push_audio(rtc.AudioFrame(speech.tobytes(), 24000, 1, len(speech)))
        await gen.push_audio(AudioSegmentEnd())
        it = gen.__aiter__()
        first: list = []
        while sum(isinstance(x, rtc.AudioFrame) for x in first) < 10:
            first.append(await asyncio.wait_for(it.__anext__(), 60))
        gen.clear_buffer()
        rest: list = []
        while sum(isinstance(x, rtc.VideoFrame) for x in rest) < 30:
            rest.append(await asyncio.wait_for(it.__anext__(), 60))
        await gen.aclose()
        return first, rest

    first, rest = asyncio.run(main())
    assert sum(isinstance(x, rtc.AudioFrame) for x in first) == 10
    assert not any(isinstance(x, (rtc.AudioFrame, AudioSegmentEnd)) for x in rest)  # nothing of the segment survives


def test_frameworks_are_optional() -> None:
    """Without Pipecat or LiveKit installed the package and its agent core import; the
    integration modules say what to install."""
    import subprocess
    import sys

    code = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("pipecat", "livekit"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import rtavatar, rtavatar.integrations, rtavatar.integrations.core
for mod, extra in (("rtavatar.integrations.pipecat", "pipecat"), ("rtavatar.integrations.livekit", "livekit")):
    try:
        __import__(mod)
    except ImportError as e:
        assert f"rtavatar[{extra}]" in str(e), e
    else:
        raise SystemExit(f"{mod} imported without its framework")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_pipecat_face_failure_is_an_error_frame_and_the_bot_still_talks(avatar: Avatar) -> None:
    pf = _pipecat_frames()
    from pipecat.tests.utils import run_test

    from rtavatar.integrations.pipecat import RTAvatarVideoService

    sky = np.full((200, 200, 3), (120, 170, 230), np.uint8)  # no face: the face cannot start
    speech = tts_audio(0.5, 24000)
    chunks = [pf.TTSAudioRawFrame(audio=speech[i : i + 2400].tobytes(), sample_rate=24000, num_channels=1)
              for i in range(0, len(speech), 2400)]
    svc = RTAvatarVideoService(avatar=avatar, portrait=sky)
    down, up = asyncio.run(run_test(svc, frames_to_send=chunks, start_timeout=60))
    errors = [f for f in up if isinstance(f, pf.ErrorFrame)]
    assert errors and "no face" in errors[0].error
    passed = [f for f in down if isinstance(f, pf.TTSAudioRawFrame)]
    assert b"".join(f.audio for f in passed) == speech.tobytes()  # the TTS audio went on untouched
    assert not any(isinstance(f, pf.OutputImageRawFrame) for f in down)
