"""`RTAvatarVideoService`: rtavatar's face in a Pipecat pipeline (pip install 'rtavatar[pipecat]').

Place it between the TTS service and the output transport, as Pipecat's own video services
go:

    pipeline = Pipeline([transport.input(), stt, context_aggregator.user(), llm, tts,
                         RTAvatarVideoService(portrait="me.jpg"), transport.output(),
                         context_aggregator.assistant()])

It consumes `TTSAudioRawFrame`s (any sample rate) and emits, per 1/25 s of that audio, an
`OutputImageRawFrame` with `sync_with_audio=True` followed by the audio it shows
(`TTSAudioRawFrame`, at the transport's output rate), so the transport shows each frame
exactly when its audio plays. Between turns it keeps emitting listening / idle frames with
silent `OutputAudioRawFrame`s at real-time pace. `TTSStoppedFrame` ends the utterance (sent on
after its last frame); `InterruptionFrame` / `UserStartedSpeakingFrame` barge in: the rest of
the utterance is dropped and the face listens within one chunk. If the face fails, the error
goes upstream as an `ErrorFrame` and TTS audio passes through untouched, so the bot still
talks. TTFB metrics run from the first TTS audio of an utterance to its first voiced frame.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
        UserStartedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
    from pipecat.services.ai_service import AIService
    from pipecat.services.settings import ServiceSettings
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("rtavatar.integrations.pipecat needs Pipecat: pip install 'rtavatar[pipecat]'") from e

from rtavatar.integrations.core import AgentFace, FaceFrame

log = logging.getLogger(__name__)


class RTAvatarVideoService(AIService):
    """See the module docstring.

    avatar: an `rtavatar.Avatar` (default: `Avatar.from_pretrained()`), shared by many services;
    portrait: a photo path or image (default: the bundled sample); steps / seed / paste /
    idle_lead: as `AgentFace`.
    """

    def __init__(self, *, avatar: Any = None, portrait: Any = None, steps: int | None = None, seed: int = 0,
                 paste: Any = True, idle_lead: float = 0.12, **kwargs: Any) -> None:
        kwargs.setdefault("settings", ServiceSettings(model=None))
        super().__init__(**kwargs)
        self._avatar, self._portrait = avatar, portrait
        self._face_args = {"steps": steps, "seed": seed, "paste": paste, "idle_lead": idle_lead}
        self._face: AgentFace | None = None
        self._failed: str | None = None
        self._out_rate = 24000
        self._frames: asyncio.Queue | None = None
        self._reader: threading.Thread | None = None
        self._tasks: list[asyncio.Task] = []
        self._held: deque[tuple[int, Frame]] = deque()  # (end frame index, TTSStoppedFrame) waiting for the utterance
        self._utt_start: dict[int, float] = {}  # utterance -> time its first audio arrived
        self._interrupted_at: float | None = None
        # Measured, for benchmarks and tests (seconds): first voiced frame after the first TTS
        # audio of each utterance, and the last voiced frame after each interruption.
        self.ttfb: list[float] = []
        self.barge_in: list[float] = []
        self.listen_after: list[float] = []  # ... and the first listening frame after it

    def can_generate_metrics(self) -> bool:
        return True

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        rate = getattr(setup, "audio_out_sample_rate", None)
        if rate:
            self._out_rate = int(rate)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        try:
            self._face = await asyncio.to_thread(self._make_face)
        except Exception as e:  # noqa: BLE001 - reported upstream, the bot keeps talking
            self._failed = str(e)
            await self.push_error(error_msg=f"rtavatar: cannot start the face: {e}", exception=e)
            return
        self._frames = asyncio.Queue()
        self._reader = self._face.feed(asyncio.get_running_loop(), self._frames, name="rtavatar-pipecat-reader")
        self._tasks = [self.create_task(self._emit()), self.create_task(self._face.run_ticks())]

    def _make_face(self) -> AgentFace:
        from rtavatar.assets import SAMPLE_PORTRAIT
        from rtavatar.engine import Avatar

        avatar = self._avatar or Avatar.from_pretrained()
        portrait = self._portrait if self._portrait is not None else str(SAMPLE_PORTRAIT)
        return AgentFace(avatar, portrait if not isinstance(portrait, Path) else str(portrait), out_rate=self._out_rate,
                         **self._face_args)

    async def _emit(self) -> None:
        assert self._frames is not None
        while True:
            f = await self._frames.get()
            if f is None:
                return
            if isinstance(f, Exception):
                self._failed = str(f)
                await self.push_error(error_msg=f"rtavatar: generation failed: {f}", exception=f)
                return
            await self._push_face_frame(f)

    async def _push_face_frame(self, f: FaceFrame) -> None:
        face = self._face
        if face is None or f.epoch != face.epoch:
            return  # read before an interruption: never shown
        now = time.perf_counter()
        if f.voiced and f.utterance in self._utt_start:
            self.ttfb.append(now - self._utt_start.pop(f.utterance))
            await self.stop_ttfb_metrics()
        if self._interrupted_at is not None:
            if f.voiced:
                self.barge_in[-1] = now - self._interrupted_at  # a voiced frame still came out after the barge-in
            elif len(self.listen_after) < len(self.barge_in):
                self.listen_after.append(now - self._interrupted_at)
        h, w = f.image.shape[:2]
        img = OutputImageRawFrame(image=f.image.tobytes(), size=(w, h), format="RGB")
        img.sync_with_audio = True
        await self.push_frame(img)
        cls = TTSAudioRawFrame if f.voiced else OutputAudioRawFrame
        await self.push_frame(cls(audio=f.audio.tobytes(), sample_rate=self._out_rate, num_channels=1))
        while self._held and f.index + 1 >= self._held[0][0]:
            await self.push_frame(self._held.popleft()[1])

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        face = self._face
        if isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            if face is None or self._failed:
                await self.push_frame(frame, direction)  # no face: the bot still talks
                return
            try:
                new = not face.speaking  # an utterance starts with this audio
                face.push_speech(frame.audio, frame.sample_rate, frame.num_channels)
                if new:
                    self._utt_start[face.utterance] = time.perf_counter()
                    self._interrupted_at = None
                    await self.start_ttfb_metrics()
            except Exception as e:  # noqa: BLE001
                self._failed = str(e)
                await self.push_error(error_msg=f"rtavatar: {e}", exception=e)
                await self.push_frame(frame, direction)
            return
        if isinstance(frame, TTSStoppedFrame) and face is not None and not self._failed:
            self._held.append((face.end_speech(), frame))  # sent on after the utterance's last frame
            return
        if isinstance(frame, (InterruptionFrame, UserStartedSpeakingFrame)) and face is not None and not self._failed:
            face.interrupt()
            self._utt_start.clear()
            self._interrupted_at = time.perf_counter()
            self.barge_in.append(0.0)
            while self._held:  # the utterance they close is gone
                await self.push_frame(self._held.popleft()[1])
        await self.push_frame(frame, direction)

    async def stop(self, frame: EndFrame) -> None:
        """Graceful end: the utterance in flight is generated and sent before the EndFrame."""
        await super().stop(frame)
        face = self._face
        if face is not None and self._tasks:
            face.end_speech()
            face.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._tasks[0]), timeout=30)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.warning("rtavatar: the last frames did not arrive in 30 s; ending anyway")
        await self._close(cancel=False)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close(cancel=True)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._close(cancel=True)

    async def _close(self, cancel: bool) -> None:
        face, self._face = self._face, None
        if face is not None:
            face.cancel() if cancel else face.close()
        for t in self._tasks:
            await self.cancel_task(t)
        self._tasks = []
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5.0)
            self._reader = None
