"""WebRTC for the page (aiortc): the browser's microphone in, the avatar's audio + video out,
a data channel for control. Signalling is one HTTP POST (offer -> answer); loopback needs no
STUN.

Pacing and A/V sync. One `Playout` clock drives both outgoing tracks: frame i is due at
t0 + stall + i / 25 and its audio plays over the same 40 ms. The audio track is the master:
when the next frame's audio is not ready at its time (generation behind real time) it sends
silence and *adds the wait to `stall`*, so the video holds its last frame for exactly as long
and the two never drift apart; the delay shows in `stats.stall_ms`. A live session produces
idle frames whenever no speech is queued, so in steady use nothing stalls.

States from voice activity: silero-vad on the microphone; while the user speaks (in `auto`
mode) the avatar listens, and returns to `auto` (speak while its own audio has voice, else
idle) 0.5 s after they stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydantic import ValidationError

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.engine import Session
from rtavatar.engine.vad import SileroStream
from rtavatar.errors import RTAvatarError
from rtavatar.server.protocol import CLIENT_MESSAGE, SetExpression, SetState

log = logging.getLogger("rtavatar.server.webrtc")
PACKET = SAMPLE_RATE // 50  # 20 ms of audio per RTP packet
JITTER = 0.08  # seconds of frames buffered before playout starts


class Playout:
    """Frames from a Session, and the clock both tracks read."""

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self.session, self.loop = session, loop
        self.frames: dict[int, Any] = {}
        self.t0: float | None = None
        self.stall = 0.0
        self.pos = 0  # next timeline sample the audio track plays
        self.ready = asyncio.Event()
        self.done = False
        self.state = None
        self.on_state = None  # callback(state) when the shown state changes
        threading.Thread(target=self._pump, name=f"{session.name}-playout", daemon=True).start()  # named: leak checks see it

    def _pump(self) -> None:
        for f in self.session.frames():
            self.loop.call_soon_threadsafe(self._add, f)
        self.loop.call_soon_threadsafe(self._finish)

    def _add(self, f: Any) -> None:
        self.frames[f.index] = f
        if self.t0 is None:
            self.t0 = time.perf_counter() + JITTER
            self.ready.set()
        for old in [i for i in self.frames if i < f.index - 3 * FPS]:  # keep ~3 s of history
            del self.frames[old]

    def _finish(self) -> None:
        self.done = True
        self.ready.set()

    async def wait_until(self, seconds: float) -> None:
        """Wait for the first frame, then until `seconds` after playout began."""
        await self.ready.wait()
        await asyncio.sleep(max(0.0, self.t0 + seconds - time.perf_counter()))


class AvatarAudioTrack(MediaStreamTrack):
    """20 ms packets of the avatar's audio, in step with the Playout clock."""

    kind = "audio"

    def __init__(self, playout: Playout) -> None:
        super().__init__()
        self.p = playout
        self.k = 0

    async def recv(self) -> av.AudioFrame:
        p = self.p
        await p.wait_until(self.k * PACKET / SAMPLE_RATE)
        i = p.pos // SAMPLES_PER_FRAME
        f = p.frames.get(i)
        if f is None:  # behind real time: hold (video holds too), keep the RTP clock going
            pcm = np.zeros(PACKET, np.int16)
            if not p.done:
                p.stall += PACKET / SAMPLE_RATE
        else:
            off = p.pos - i * SAMPLES_PER_FRAME
            pcm = (np.clip(f.audio[off : off + PACKET], -1, 1) * 32767).astype(np.int16)
            p.pos += PACKET
            if f.state != p.state:
                p.state = f.state
                if p.on_state:
                    p.on_state(f.state)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, self.k * PACKET, Fraction(1, SAMPLE_RATE)
        self.k += 1
        return frame


class AvatarVideoTrack(MediaStreamTrack):
    """The frame whose audio is playing, 25 times a second."""

    kind = "video"

    def __init__(self, playout: Playout) -> None:
        super().__init__()
        self.p = playout
        self.k = 0  # frames sent
        self.last: np.ndarray | None = None

    async def recv(self) -> av.VideoFrame:
        p = self.p
        await p.wait_until(self.k / FPS)
        f = p.frames.get(p.pos // SAMPLES_PER_FRAME) or p.frames.get(max(0, p.pos // SAMPLES_PER_FRAME - 1))
        if f is not None:
            self.last = f.image
        img = self.last if self.last is not None else np.zeros((p.session.sampler.bundle.resolution,) * 2 + (3,), np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts, frame.time_base = self.k * (90000 // FPS), Fraction(1, 90000)
        self.k += 1
        return frame


class MicVAD:
    """silero-vad over the browser's microphone: True while the user speaks."""

    def __init__(self) -> None:
        self.stream = SileroStream()
        self.speaking = False
        self.quiet_since = 0.0
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def feed(self, frame: av.AudioFrame) -> bool | None:
        """Returns the new speaking state when it changes, else None."""
        change = None
        probs = [p for f in self.resampler.resample(frame) for p in self.stream.push(f.to_ndarray().reshape(-1).astype(np.float32) / 32768.0)]
        for p in probs:
            now = time.perf_counter()
            if p > 0.5:
                self.quiet_since = now
                if not self.speaking:
                    self.speaking, change = True, True
            elif self.speaking and now - self.quiet_since > 0.5:
                self.speaking, change = False, False
        return change


class WebRTCPeer:
    """One page connection."""

    def __init__(self, session: Session) -> None:
        from aiortc import RTCPeerConnection

        self.pc = RTCPeerConnection()
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.playout = Playout(session, self.loop)
        self.audio, self.video = AvatarAudioTrack(self.playout), AvatarVideoTrack(self.playout)
        self.pc.addTrack(self.audio)
        self.pc.addTrack(self.video)
        self.channel = None
        self.mode = "auto"  # the page's choice; VAD switches listen on top of auto
        self.user_speaking = False
        self.closed = asyncio.Event()
        self.t_start = time.perf_counter()
        self.playout.on_state = lambda s: self.send({"type": "state", "state": s})

        @self.pc.on("datachannel")
        def on_channel(ch: Any) -> None:
            self.channel = ch

            @ch.on("message")
            def on_message(msg: Any) -> None:
                self.handle(msg)

            @ch.on("open")
            def on_open() -> None:  # state changes before the channel opened were not seen
                if self.playout.state is not None:
                    self.send({"type": "state", "state": self.playout.state})

        self._listener: asyncio.Future | None = None

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._listener = asyncio.ensure_future(self._listen(track))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed", "disconnected"):
                await self.close()

    def send(self, obj: dict[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(obj))

    def stats(self) -> dict[str, Any]:
        t = self.session.times
        return {"type": "stats", "state": self.playout.state, "first_frame_ms": self.session.first_frame_ms, "frames": t.frames, "sent": self.video.k,
                "gen_fps": round(t.frames / max(time.perf_counter() - self.t_start, 1e-9), 1),
                "stall_ms": round(1000 * self.playout.stall), "user_speaking": self.user_speaking}

    def handle(self, msg: Any) -> None:
        try:
            data = json.loads(msg)
            if isinstance(data, dict) and data.get("type") == "say":
                text = str(data.get("text", ""))[:500]
                asyncio.ensure_future(self.say(text))
                return
            if isinstance(data, dict) and data.get("type") == "stats":
                self.send(self.stats())
                return
            m = CLIENT_MESSAGE.validate_python(data)
            if isinstance(m, SetState):
                self.mode = m.state
                self.session.set_state("listen" if m.state == "auto" and self.user_speaking else m.state)
            elif isinstance(m, SetExpression):
                self.session.set_expression(**m.expression.values())
            elif m.type == "interrupt":
                self.session.interrupt()
            else:
                raise RTAvatarError(f"{m.type} is not a data-channel message")
        except (ValueError, ValidationError, RTAvatarError) as e:
            self.send({"type": "error", "error": " ".join(str(e).split())[:300]})

    async def say(self, text: str) -> None:
        from rtavatar.tts import Voice, synthesize

        if not text.strip():
            return
        try:
            audio = await asyncio.to_thread(lambda: synthesize(text, Voice()).audio)
            self.push(audio)
        except RTAvatarError as e:
            self.send({"type": "error", "error": str(e)})

    def push(self, audio: np.ndarray) -> None:
        self.session.push_audio(audio)
        self.session.flush()

    async def _listen(self, track: Any) -> None:
        vad = None
        try:
            vad = await asyncio.to_thread(MicVAD)
        except Exception as e:  # noqa: BLE001 - no VAD: the page still works, states stay as set
            log.warning("silero-vad unavailable (%s): no listen state from the microphone", e)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if vad is None:
                continue
            change = vad.feed(frame)
            if change is not None:
                self.user_speaking = change
                self.send({"type": "user", "speaking": change})
                if self.mode == "auto":
                    self.session.set_state("listen" if change else "auto")

    async def answer(self, sdp: str, kind: str) -> dict[str, str]:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return {"sdp": self.pc.localDescription.sdp, "type": self.pc.localDescription.type}

    async def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.session.cancel()
            if self._listener is not None:  # else it waits on a track that never ends, and is destroyed pending
                self._listener.cancel()
            await self.pc.close()
