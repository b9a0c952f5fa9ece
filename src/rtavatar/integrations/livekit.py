"""rtavatar's face for LiveKit Agents (pip install 'rtavatar[livekit]').

- `RTAvatarVideoGenerator`: a `livekit.agents.voice.avatar.VideoGenerator` for
  `AvatarRunner`. `push_audio` takes the agent's `rtc.AudioFrame`s (any rate) and
  `AudioSegmentEnd`; iterating it yields, per frame, an `rtc.VideoFrame` (RGBA) followed by
  exactly `sample_rate // fps` samples of the audio it shows, and `AudioSegmentEnd` after a
  segment's last frame. Between segments it yields idle / listening video frames only, at
  25 fps. `clear_buffer()` (the agent was interrupted) drops the rest of the segment; the face
  listens within one chunk.
- In one process (the shape for a CPU machine): give the agent a `QueueAudioOutput` and run
  an `AvatarRunner(room, audio_recv=that_output, video_gen=RTAvatarVideoGenerator(...))`.
- As a separate avatar worker: `RTAvatarSession` on the agent side points the agent's audio
  at the worker's participant (LiveKit data streams); the worker runs `run_avatar_worker`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any, AsyncIterator

import numpy as np

try:
    from livekit import rtc
    from livekit.agents.voice.avatar import (
        AudioSegmentEnd,
        AvatarOptions,
        AvatarRunner,
        AvatarSession,
        DataStreamAudioOutput,
        DataStreamAudioReceiver,
        VideoGenerator,
    )
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("rtavatar.integrations.livekit needs LiveKit Agents: pip install 'rtavatar[livekit]'") from e

from rtavatar import FPS
from rtavatar.integrations.core import AgentFace, FaceFrame

log = logging.getLogger(__name__)


def _rgba(image: np.ndarray) -> bytes:
    h, w = image.shape[:2]
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3], out[..., 3] = image, 255
    return out.tobytes()


class RTAvatarVideoGenerator(VideoGenerator):
    """See the module docstring. `avatar`: an `rtavatar.Avatar` (default: the shipped model)."""

    def __init__(self, avatar: Any = None, portrait: Any = None, *, sample_rate: int = 24000, steps: int | None = None,
                 seed: int = 0, paste: Any = True, idle_lead: float = 0.12) -> None:
        from rtavatar.assets import SAMPLE_PORTRAIT
        from rtavatar.engine import Avatar

        self.sample_rate, self.fps = sample_rate, FPS
        self.face = AgentFace(avatar or Avatar.from_pretrained(), portrait if portrait is not None else str(SAMPLE_PORTRAIT),
                              out_rate=sample_rate, steps=steps, seed=seed, paste=paste, idle_lead=idle_lead)
        self._ends: deque[int] = deque()  # frame index one past each finished segment
        self._open_segment = False
        self._queue: asyncio.Queue | None = None
        self._reader: threading.Thread | None = None
        self._ticker: asyncio.Task | None = None

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            if self._open_segment:
                self._open_segment = False
                self._ends.append(self.face.end_speech())
            return
        self._open_segment = True
        self.face.push_speech(bytes(frame.data), frame.sample_rate, frame.num_channels)

    def clear_buffer(self) -> None:
        self.face.interrupt()
        self._open_segment = False
        self._ends.clear()

    def _start(self) -> None:
        self._queue = asyncio.Queue()
        self._reader = self.face.feed(asyncio.get_running_loop(), self._queue, name="rtavatar-livekit-reader")
        self._ticker = asyncio.create_task(self.face.run_ticks())

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        if self._queue is None:
            self._start()
        assert self._queue is not None
        while True:
            f: FaceFrame | Exception | None = await self._queue.get()
            if f is None:
                return
            if isinstance(f, Exception):
                raise f  # generation failed: the runner logs it
            if f.epoch != self.face.epoch:
                continue  # read before clear_buffer(): never shown
            h, w = f.image.shape[:2]
            yield rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, _rgba(f.image))
            if f.voiced:
                yield rtc.AudioFrame(f.audio.tobytes(), self.sample_rate, 1, len(f.audio))
            while self._ends and f.index + 1 >= self._ends[0]:
                self._ends.popleft()
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self.face.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5.0)


async def run_avatar_worker(room: rtc.Room, generator: RTAvatarVideoGenerator, *, width: int, height: int,
                            sender_identity: str | None = None) -> AvatarRunner:
    """The avatar worker's side: receive the agent's audio over data streams, publish the face."""
    runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room, sender_identity=sender_identity),
                          video_gen=generator,
                          options=AvatarOptions(video_width=width, video_height=height, video_fps=FPS,
                                                audio_sample_rate=generator.sample_rate, audio_channels=1))
    await runner.start()
    return runner


class RTAvatarSession(AvatarSession):
    """The agent's side of a separate rtavatar worker: the agent's audio goes to the worker."""

    def __init__(self, avatar_identity: str = "rtavatar", sample_rate: int = 24000) -> None:
        super().__init__()
        self._identity, self._rate = avatar_identity, sample_rate

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "rtavatar"

    async def start(self, agent_session: Any, room: rtc.Room) -> None:
        await super().start(agent_session, room)
        agent_session.output.audio = DataStreamAudioOutput(room, destination_identity=self._identity,
                                                           sample_rate=self._rate,
                                                           wait_remote_track=rtc.TrackKind.KIND_VIDEO)
