"""`AgentFace`: a live Session shaped for voice-agent frameworks (Pipecat, LiveKit Agents).

A voice agent hands the face its TTS audio in bursts, at the TTS's own sample rate, says when
an utterance ends, and barges in when the user talks. The face must return each video frame
with exactly the 1/25 s of audio it shows, at the agent's output rate, keep producing idle /
listening frames between turns at real-time pace, and drop everything unsaid on a barge-in.

- Speech goes into the Session resampled to 16 kHz (the model's rate) and, untouched at the
  output rate, into a buffer aligned with the Session's timeline, so frame i carries output
  samples [i * rate/25, (i+1) * rate/25): the agent's own audio, not a 16 kHz copy.
- Between utterances `tick()` pushes silence only while the pushed timeline is less than
  `idle_lead` seconds ahead of a wall clock started with the face, so idle frames flow at
  25 fps without queueing seconds of silence in front of the next utterance.
- `interrupt()` calls `Session.interrupt()` (queued audio and unread frames dropped, the face
  listens from the next chunk) and cuts the output buffer at the same frame; frames read
  before it but not yet handed out are dropped by an epoch counter. A frame the reader took
  from the Session just before the cut but stamps just after it is stale too: its index lies
  below the cut, which every later frame's does not.
- A new utterance makes the same cut (with "speak", and no epoch change: the idle frames
  already handed out are still right), so its first voiced frame is one short chunk away
  instead of behind the idle silence and frames the session had queued. Only idle is cut:
  while an earlier utterance still has frames the reader has not taken (TTS runs ahead of
  real time, one utterance per sentence), the new one queues after it.

Frameworks read frames with `next_frame()` from a thread (it blocks); everything else is
called from their event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError

log = logging.getLogger(__name__)


@dataclass
class FaceFrame:
    """One video frame and the audio it shows, at the face's output rate."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    audio: np.ndarray  # (out_rate // 25,) int16
    voiced: bool  # carries speech the agent sent (not idle silence)
    utterance: int  # which utterance (0: none)
    epoch: int


def resample_int16(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or not len(pcm):
        return pcm.astype(np.int16, copy=False)
    from scipy.signal import resample_poly

    g = gcd(src, dst)
    y = resample_poly(pcm.astype(np.float32), dst // g, src // g)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def to_mono_int16(data: bytes | np.ndarray, channels: int = 1) -> np.ndarray:
    a = np.frombuffer(bytes(data), np.int16) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
    if a.dtype != np.int16:
        a = np.clip(np.round(np.asarray(a, np.float32) * 32767), -32768, 32767).astype(np.int16)
    if channels > 1:
        a = a[: len(a) // channels * channels].reshape(-1, channels).mean(1).astype(np.int16)
    return a


class AgentFace:
    """See the module docstring. `avatar` is an `rtavatar.Avatar`; `portrait` a path or image;
    `paste`: the photo renderer's options (rtavatar.photo.PasteOptions; True: the defaults; None:
    the aligned face crop)."""

    def __init__(self, avatar: Any, portrait: Any, *, out_rate: int = 24000, paste: Any = True,
                 steps: int | None = None, seed: int = 0, idle_lead: float = 0.12, between_turns: str = "listen",
                 buffer: int = 16, idle_chunk: int = 4) -> None:
        if out_rate % FPS:
            raise RTAvatarError(f"output sample rate {out_rate} is not a multiple of {FPS} (one frame's audio must be whole samples)")
        self.out_rate, self.spf = out_rate, out_rate // FPS
        self.idle_lead, self.between_turns = idle_lead, between_turns
        from rtavatar.engine.schedule import ChunkSchedule

        self.session = avatar.session(portrait, paste=paste, steps=steps, seed=seed, state=between_turns,
                                      buffer=buffer, schedule=ChunkSchedule(idle=idle_chunk))
        self._lock = threading.Lock()
        self._out = np.zeros(0, np.int16)  # output-rate audio of the timeline not yet read, from sample _out0
        self._out0 = 0
        self._voiced: list[tuple[int, int, int]] = []  # (start, end, utterance) in 16 kHz samples
        self._pushed = 0  # 16 kHz samples pushed into the session
        self._epoch = 0
        self._epoch_from = 0  # first frame index of the current epoch (the last interrupt's cut)
        self._utterance = 0
        self._speaking = False
        self._clock0 = time.perf_counter()
        self.closed = False

    # ------------------------------------------------------------------ from the event loop
    def push_speech(self, data: bytes | np.ndarray, sample_rate: int, channels: int = 1) -> None:
        """TTS audio of the current utterance (any rate, int16 bytes or samples)."""
        pcm = to_mono_int16(data, channels)
        if not len(pcm):
            return
        with self._lock:
            if self.closed:
                raise RTAvatarError("the face is closed")
            if not self._speaking:
                self._speaking = True
                self._utterance += 1
                if self._voiced and self._voiced[-1][1] > self.session.shown * SAMPLES_PER_FRAME:
                    self.session.set_state("speak")  # the last utterance still plays: this one follows it
                else:
                    self._cut("speak")  # the utterance starts now, not after idle frames already queued
            n16 = self._push(pcm, sample_rate)
            self._voiced.append((self._pushed - n16, self._pushed, self._utterance))

    def end_speech(self) -> int:
        """The utterance is over: its last partial frame is generated, the face turns to
        `between_turns`. Returns the index one past the utterance's last frame."""
        with self._lock:
            if self._speaking:
                self._speaking = False
                self._pad_to_frame()
                self.session.flush()  # the last frames do not wait for look-ahead audio that will not come
                self.session.set_state(self.between_turns)
            return self._pushed // SAMPLES_PER_FRAME

    def interrupt(self) -> None:
        """Barge-in: drop the unsaid rest; the face listens within one chunk."""
        with self._lock:
            self._epoch += 1
            self._speaking = False
            self._cut("listen")
            self._epoch_from = self._pushed // SAMPLES_PER_FRAME  # the cut: the session truncated its audio there

    def _cut(self, state: str) -> None:
        """Drop the timeline after the last frame read (audio pushed, frames made) and go on in
        `state`; the wall clock restarts from what was shown (lock held)."""
        self.session.interrupt(state)
        self._pushed = self.session.audio.samples
        self._out = self._out[: max(0, self._pushed * self.out_rate // SAMPLE_RATE - self._out0)]
        self._voiced = [(a, min(b, self._pushed), u) for a, b, u in self._voiced if a < self._pushed]
        self._clock0 = time.perf_counter() - self._pushed / SAMPLE_RATE

    def tick(self) -> None:
        """Keep idle frames flowing: push silence while the timeline is less than idle_lead ahead."""
        with self._lock:
            if self.closed:
                return
            ahead = self._pushed / SAMPLE_RATE - (time.perf_counter() - self._clock0)
            if ahead >= self.idle_lead:
                return
            if self._speaking:  # the TTS is late: keep the clock honest, the face listens meanwhile
                return
            n = int(np.ceil((self.idle_lead - ahead) * FPS)) * SAMPLES_PER_FRAME
            self._pad_to_frame()
            self._push(np.zeros(n, np.int16), SAMPLE_RATE)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.session.close()

    def cancel(self) -> None:
        with self._lock:
            self.closed = True
            self.session.cancel()

    # ------------------------------------------------------------------ from a reader thread
    def next_frame(self, timeout: float | None = None) -> FaceFrame | None:
        """The next frame with its output audio (blocks); None when the session has ended."""
        for f in self.session.frames(timeout=timeout):
            with self._lock:
                lo = max(0, f.index * self.spf - self._out0)
                o = self._out[lo : lo + self.spf]
                if len(o) < self.spf:
                    o = np.concatenate([o, np.zeros(self.spf - len(o), np.int16)])
                a, b = f.index * SAMPLES_PER_FRAME, (f.index + 1) * SAMPLES_PER_FRAME
                utt = next((u for s, e, u in self._voiced if s < b and e > a), 0)
                # Forget what is read: a session of hours keeps only the audio ahead of the reader.
                self._out, self._out0 = self._out[lo:], self._out0 + lo
                self._voiced = [v for v in self._voiced if v[1] > a]
                # Taken from the session before the last interrupt, stamped after it: stale.
                epoch = self._epoch if f.index >= self._epoch_from else self._epoch - 1
                return FaceFrame(f.index, f.image, o, utt > 0, utt, epoch)
        return None

    # ------------------------------------------------------------------ asyncio glue for both frameworks
    def feed(self, loop: Any, q: Any, name: str = "rtavatar-agent-reader") -> threading.Thread:
        """Start a thread that reads frames (blocking) and hands each to asyncio queue `q` on
        `loop`; then None at the end, or the exception that stopped generation."""
        def read() -> None:
            try:
                while True:
                    f = self.next_frame()
                    loop.call_soon_threadsafe(q.put_nowait, f)
                    if f is None:
                        return
            except Exception as e:  # noqa: BLE001 - the consumer reports it
                loop.call_soon_threadsafe(q.put_nowait, e)

        t = threading.Thread(target=read, daemon=True, name=name)
        t.start()
        return t

    async def run_ticks(self, every: float = 0.02) -> None:
        """Call tick() every `every` seconds until the face is closed (an asyncio task)."""
        import asyncio

        while not self.closed:
            self.tick()
            await asyncio.sleep(every)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def speaking(self) -> bool:
        """Inside an utterance (speech pushed, end_speech / interrupt not yet called)."""
        return self._speaking

    @property
    def utterance(self) -> int:
        """The number of the current (or last) utterance; 0 before the first."""
        return self._utterance

    # ------------------------------------------------------------------ internals (lock held)
    def _push(self, pcm: np.ndarray, rate: int) -> int:
        """Append int16 audio at `rate` to the session (16 kHz) and the output buffer; 16 kHz samples added."""
        before = self.session.audio.samples
        self.session.push_audio(pcm, rate)
        n16 = self.session.audio.samples - before
        self._pushed += n16
        out = resample_int16(pcm, rate, self.out_rate)
        want = self._pushed * self.out_rate // SAMPLE_RATE - self._out0  # keep the two buffers exactly aligned
        self._out = np.concatenate([self._out, out])[:want]
        if len(self._out) < want:
            self._out = np.concatenate([self._out, np.zeros(want - len(self._out), np.int16)])
        return n16

    def _pad_to_frame(self) -> None:
        rest = -self._pushed % SAMPLES_PER_FRAME
        if rest:
            self._push(np.zeros(rest, np.int16), SAMPLE_RATE)
