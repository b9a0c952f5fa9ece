"""A live conversation with one avatar: audio in, frames out (DESIGN.md §5, §8).

    session = avatar.session("me.jpg")
    session.push_audio(pcm)            # any chunk size, 16 kHz mono (float32 or int16)
    for frame in session.frames():     # Frame(index, pts, image, audio, state)
        ...

Time. Frame i shows the timeline's audio [i x 640, (i + 1) x 640) and has pts = i / 25 s.
The timeline is the pushed audio, plus silence the session itself inserts: a flush pads the
last frame, and a live session (`live=True`) fills gaps with idle frames so a client never
sees a frozen face. Each Frame carries its own 640 samples, so whoever plays the frames
plays the audio they belong to.

Stages. Audio features -> denoiser -> VAE decoder (+ paste-back) run as three threads
joined by bounded queues (`pipeline=True`), so steady throughput approaches the slowest
stage rather than the sum; `pipeline=False` runs the same three functions one after the
other in one thread and gives the same frames. Back-pressure: when nobody reads frames the
stages stop after `buffer` frames.

Determinism. Without `live`, the frames depend only on the audio, the calls and the seed,
not on how the audio was cut into pushes or how fast it arrived.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.engine.audio import StreamingAudio
from rtavatar.engine.core import ChunkSampler, Reference
from rtavatar.engine.motion import MotionTrack
from rtavatar.engine.schedule import ChunkSchedule
from rtavatar.engine.vad import voice_detector
from rtavatar.errors import RTAvatarError
from rtavatar.models.conditioning import (CONTROL_SCALE, CONTROLS, STATE_ID, STATES, StateTracker, check_expression, control_vector,
                                          named_controls, state_id)
from rtavatar.models.motion import MotionNet
from rtavatar.photo.compose import RenderFrame, Renderer

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet = weakref.WeakSet()  # sessions whose stage threads may still run


@atexit.register
def _stop_live_sessions() -> None:
    """A daemon stage thread still inside a torch op when the interpreter finalizes aborts the
    process ("terminate called without an active exception"): end and join them first."""
    for s in list(_LIVE):
        s.cancel()
        s.join(10.0)


MAX_PUSH_SECONDS = 600.0
LIVE_LEAD = 0.6  # seconds ahead of its reader's clock a live session sends out short chunks of ready speech
LIVE_STARVING = 0.45  # ... and inserts silence when nothing is ready


@dataclass
class Frame:
    index: int
    pts: float  # seconds on the session's audio clock (index / 25)
    image: np.ndarray  # (H, W, 3) uint8: the aligned face, or the whole picture with paste options
    audio: np.ndarray  # (640,) float32: the audio this frame shows
    state: str


@dataclass
class _Chunk:
    epoch: int
    start: int  # first new frame
    context: list[int]  # frame indices of the motion frames
    audio: np.ndarray  # (new * 640,) timeline audio of the new frames
    zero_after: int | None = None  # timeline sample after which the features assume silence
    tokens: torch.Tensor | None = None
    mouth: np.ndarray | None = None  # (new, P, 2) the MotionNet's offsets, when the renderer uses them
    states: np.ndarray | None = None
    controls: np.ndarray | None = None
    latents: torch.Tensor | None = None
    t_plan: float = 0.0  # perf_counter() stamps of the chunk's way through the stages (Session.trace)
    t_features: float = 0.0
    t_denoise: float = 0.0
    t_denoised: float = 0.0

    @property
    def new(self) -> int:
        return len(self.audio) // SAMPLES_PER_FRAME


@dataclass
class StageTimes:
    """Seconds spent in each stage and the frames it produced."""

    features: float = 0.0
    denoise: float = 0.0
    decode: float = 0.0
    frames: int = 0
    chunks: list[int] = field(default_factory=list)

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: round(1000 * getattr(self, k) / n, 2) for k in ("features", "denoise", "decode")}


def as_pcm(pcm: np.ndarray | bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 mono at 16 kHz from float or int16 samples (or int16 bytes); other rates are
    resampled (polyphase); anything else is refused with a clear error."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise RTAvatarError(f"PCM bytes must be int16 (an even byte count), got {len(pcm)} bytes")
        pcm = np.frombuffer(bytes(pcm), np.int16)
    a = np.asarray(pcm)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise RTAvatarError(f"audio must be mono (1-D samples), got shape {a.shape}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise RTAvatarError("audio contains NaN or infinite samples")
    else:
        raise RTAvatarError(f"audio samples must be float32 or int16, got {a.dtype}")
    if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 192000:
        raise RTAvatarError(f"sample rate {sample_rate!r} is not supported (8-192 kHz)")
    if sample_rate != SAMPLE_RATE and len(a):
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(SAMPLE_RATE, int(sample_rate))
        a = resample_poly(a, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    if len(a) > MAX_PUSH_SECONDS * SAMPLE_RATE:
        raise RTAvatarError(f"one push holds at most {MAX_PUSH_SECONDS:.0f} s of audio; push it in parts")
    return a


def render_chunk(renderer: Renderer, sampler: ChunkSampler, ref: Reference, latents: torch.Tensor, start: int,
                 states: np.ndarray, controls: np.ndarray, stale: Callable[[], bool] = lambda: False,
                 mouth: np.ndarray | None = None) -> list[np.ndarray] | None:
    """A chunk's pictures by the photo renderer (the render contract, photo/compose.py): each
    frame's index, state, named controls, VAE latents and MotionNet offsets (`mouth`, when the
    model has a MotionNet and the renderer uses it), and its decoded face only when the
    renderer needs one. None when `stale()` turns true before the renderer runs."""
    z = sampler.raw_latents(ref, latents)
    faces = sampler.decode_raw(z) if renderer.needs_face else [None] * len(z)
    if stale():
        return None
    if mouth is not None and sampler.mute_listen:  # listening frames hear silence: the mouth rests, as the DiT's does
        mouth = np.where((np.asarray(states[: len(mouth)]) == STATE_ID["listen"])[:, None, None], 0.0, mouth).astype(np.float32)
    frames = [RenderFrame(start + j, STATES[int(states[j])], named_controls(controls[j]), z[j], faces[j],
                          None if mouth is None else mouth[j]) for j in range(len(z))]
    return renderer.render(frames)


def mouth_track(net: MotionNet | None, renderer: Renderer | None) -> MotionTrack | None:
    """The MotionNet's track when the model has one and the renderer reads its offsets (`uses_motion`)."""
    return MotionTrack(net) if net is not None and renderer is not None and renderer.uses_motion else None


def skips_denoiser(track: MotionTrack | None, renderer: Renderer | None) -> bool:
    """The renderer reads only the MotionNet's offsets: the denoiser's frames would go unread."""
    return track is not None and renderer is not None and not (renderer.needs_latents or renderer.needs_face)


class Session:
    """Create with `Avatar.session(...)`; see the module docstring."""

    def __init__(self, sampler: ChunkSampler, ref: Reference, *, state: str = "auto",
                 expression: dict[str, float] | None = None, seed: int = 0, schedule: ChunkSchedule | None = None,
                 pipeline: bool = True, live: bool = False, buffer: int = 32,
                 renderer: Renderer | None = None, name: str = "session", voice: str = "energy",
                 start: bool = True, max_ahead: float | None = None) -> None:
        self.sampler, self.ref = sampler, ref
        icfg = sampler.bundle.cfg
        self.schedule = schedule or ChunkSchedule()
        self.max_new = icfg.max_new
        self.schedule.sizes(self.max_new)  # validates
        self.motion = icfg.max_motion if self.schedule.motion < 0 else self.schedule.motion
        self.mouth = mouth_track(sampler.bundle.motion, renderer)
        self.skip_denoise = skips_denoiser(self.mouth, renderer)
        self.audio = StreamingAudio(sampler.net, extra_lookahead=self.mouth.lookahead_samples if self.mouth else 0,
                                    extra_past=self.mouth.before if self.mouth else 0)
        self.live, self.pipeline, self.renderer, self.name = live, pipeline, renderer, name
        self.max_ahead = max_ahead  # seconds of audio a push may put ahead of the frames read (None: no bound)
        self.times = StageTimes()
        # The last chunks' stage stamps (perf_counter seconds): where a frame's latency goes.
        self.trace: deque[dict[str, float | int | str]] = deque(maxlen=64)
        self._gen = torch.Generator().manual_seed(seed)
        self._tracker = StateTracker(voiced=voice_detector(voice))  # 'auto': speak while the avatar's audio has voice
        self._lock = threading.Condition()
        if state != "auto":
            state_id(state)
        # State and expression changes, each anchored at the frame where the audio pushed after
        # the call begins: (first frame, value), in order.
        self._states: list[tuple[int, str]] = [(0, state)]
        self._exprs: list[tuple[int, np.ndarray]] = [(0, control_vector(check_expression(expression or {})))]
        self._epoch = 0
        self._next = 0  # first frame not yet planned
        self._chunk_index = 0  # chunks since the last (re)start
        self._restart = True  # the next chunk is a first chunk (short look-ahead)
        self._flush_to = 0  # frames up to this index are generated without waiting for look-ahead
        self._closing = False
        self._error: BaseException | None = None
        self._shown = 0  # frames handed to the reader
        self._last_state = STATE_ID["idle"]
        self._latents: dict[int, tuple[torch.Tensor, int, np.ndarray]] = {}  # recent frames' latents, states, controls (motion context)
        self._t0: float | None = None  # live: wall time frame 0 was read
        self._first_push: float | None = None
        self._created = time.perf_counter()
        self.first_frame_at: float | None = None  # perf_counter() when frame 0 was ready
        self._out: queue.Queue = queue.Queue(maxsize=buffer)
        # Intra-op threads per stage (torch's setting is per thread): when the renderer decodes no
        # face, the features and decode stages are light and take one each, so they do not
        # oversubscribe the cores the denoiser uses (docs/BENCHMARKS.md: about +20 % fps on 2 cores;
        # with a full decode it measured slower, so that path keeps torch's default).
        light = renderer is not None and not renderer.needs_face
        self._stage_threads = {"_run_features": 1, "_run_decode": 1} if pipeline and light else {}
        if pipeline:
            self._q1: queue.Queue = queue.Queue(maxsize=2)
            self._q2: queue.Queue = queue.Queue(maxsize=2)
            stages = [(self._run_features, None, self._q1), (self._run_denoise, self._q1, self._q2), (self._run_decode, self._q2, None)]
        else:
            stages = [(self._run_sequential, None, None)]
        self._threads = [threading.Thread(target=self._guard, args=s, name=f"{name}-{s[0].__name__}", daemon=True) for s in stages]
        if start:  # start=False: no stages run (the chunk planning alone, e.g. in tests: plan_next())
            for t in self._threads:
                t.start()
            _LIVE.add(self)

    # ------------------------------------------------------------------ public API
    @property
    def lookahead_ms(self) -> float:
        """Audio needed past a frame before it is generated (steady chunks)."""
        return self.audio.lookahead_ms

    def push_audio(self, pcm: np.ndarray | bytes, sample_rate: int = SAMPLE_RATE) -> None:
        """Append speech the avatar says. Any chunk size; float32 / int16, resampled to 16 kHz.
        With `max_ahead`, a push that would put the audio more than that many seconds ahead of
        the frames read is refused (RTAvatarError; nothing of it is kept)."""
        a = as_pcm(pcm, sample_rate)
        with self._lock:
            self._check_open()
            if self.max_ahead is not None:  # backpressure: a client may not run far ahead of playback
                ahead = (self.audio.samples + len(a)) / SAMPLE_RATE - self._shown / FPS
                if ahead > self.max_ahead:
                    raise RTAvatarError(f"{self.name}: this push would put the audio {ahead:.1f} s ahead of the frames "
                                        f"played (at most {self.max_ahead:g} s); push at the pace it plays")
            if self._first_push is None and len(a):
                self._first_push = time.perf_counter()
            self.audio.append(a)
            self._lock.notify_all()

    def _anchor(self) -> int:
        """The frame a change made now applies from: where the audio pushed next begins (a voice
        agent's "listen now" applies after what it already queued), never before the next chunk."""
        return max(self._next, -(-self.audio.samples // SAMPLES_PER_FRAME))

    def set_state(self, state: str) -> None:
        """'speak' | 'listen' | 'idle' | 'auto' (from the audio), for the audio pushed after this
        call (at once when nothing is queued); the chunk it starts in is short."""
        if state != "auto":
            state_id(state)
        with self._lock:
            self._states = self._change(self._states, self._anchor(), state)
            self._lock.notify_all()

    def set_expression(self, **controls: float) -> None:
        """Named controls (docs/DATA.md), anchored like set_state; unnamed ones keep their value."""
        checked = check_expression(controls)
        with self._lock:
            at = self._anchor()
            cur = dict(zip(CONTROLS, (self._value_at(self._exprs, at) / CONTROL_SCALE).tolist()))
            self._exprs = self._change(self._exprs, at, control_vector({**cur, **checked}))

    @staticmethod
    def _value_at(changes: list, frame: int):  # noqa: ANN205 - the value in effect at `frame`
        value = changes[0][1]
        for at, v in changes:
            if at > frame:
                break
            value = v
        return value

    @staticmethod
    def _change(changes: list, at: int, value: object) -> list:
        """`changes` with `value` from frame `at` on (replacing what was set for later frames)."""
        return [c for c in changes if c[0] < at] + [(at, value)]

    @classmethod
    def _since(cls, changes: list, frame: int) -> list:
        """`changes` without those no frame >= `frame` can see (bounded over long sessions)."""
        keep = [c for c in changes if c[0] > frame]
        return [(frame, cls._value_at(changes, frame)), *keep]

    def interrupt(self, state: str | None = None) -> None:
        """Barge-in: drop queued audio and every frame not yet read; the face listens from the
        next chunk (an explicit "speak" becomes "listen"; or it takes `state`), which is a short
        first chunk. A voice agent also calls it with "speak" when a new utterance starts, so
        the speech does not queue behind idle silence already pushed or frames already made."""
        if state is not None and state != "auto":
            state_id(state)
        with self._lock:
            self._epoch += 1
            cut = self._shown
            self.audio.truncate(cut * SAMPLES_PER_FRAME)
            self._next = cut
            self._flush_to = min(self._flush_to, cut)
            self._chunk_index = 0
            self._restart = True
            self._tracker.reset(quiet="listen")
            # Changes anchored in the dropped audio go with it; an explicit "speak" becomes "listen".
            self._states = [c for c in self._states if c[0] <= cut] or self._states[:1]
            self._exprs = [c for c in self._exprs if c[0] <= cut] or self._exprs[:1]
            now = self._value_at(self._states, cut)
            if state is None and now == "speak":
                self._states = self._change(self._states, cut, "listen")
            elif state is not None and now != state:
                self._states = self._change(self._states, cut, state)
            if not self._closing:
                self._drain(self._out)
            self._lock.notify_all()

    def flush(self) -> None:
        """End of an utterance: the audio pushed so far is generated without waiting for more
        (its last frame padded with silence)."""
        with self._lock:
            self._check_open()
            self._pad_to_frame()
            self._flush_to = self.audio.samples // SAMPLES_PER_FRAME
            self._lock.notify_all()

    def close(self) -> None:
        """Flush and end: `frames()` stops after the last frame. Does not block."""
        with self._lock:
            if not self._closing:
                self._pad_to_frame()
                self._flush_to = self.audio.samples // SAMPLES_PER_FRAME
                self._closing = True
            self._lock.notify_all()

    def cancel(self) -> None:
        """End now: drop everything not yet read and stop the stages (a client that went away)."""
        with self._lock:
            self._epoch += 1
            self._closing = True
            self._flush_to = self._next
            self._drain(self._out)
            self._lock.notify_all()
        self._out.put(None)

    def frames(self, timeout: float | None = None) -> Iterator[Frame]:
        """Frames in order as they are made; ends after close() (or after `timeout` seconds
        without a frame)."""
        while True:
            try:
                item = self._out.get(timeout=timeout)
            except queue.Empty:
                return
            if item is None:
                self._out.put(None)  # later calls end too
                if self._error is not None:
                    raise RTAvatarError(f"{self.name}: generation failed: {self._error}") from self._error
                return
            epoch, frame = item
            with self._lock:
                if epoch != self._epoch:
                    continue
                self._shown = frame.index + 1
                if self._t0 is None:
                    self._t0 = time.perf_counter() - frame.pts  # the live clock: frame i is due at t0 + i / 25
            yield frame

    @property
    def shown(self) -> int:
        """Frames handed to the reader so far (the next one read has this index)."""
        return self._shown

    @property
    def first_frame_ms(self) -> float | None:
        """First audio pushed -> frame 0 ready, in ms (a live session's idle start: from its
        creation); None before frame 0."""
        if self.first_frame_at is None:
            return None
        start = self._first_push if self._first_push is not None and self._first_push <= self.first_frame_at else self._created
        return 1000.0 * (self.first_frame_at - start)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()

    # ------------------------------------------------------------------ helpers (lock held)
    def _check_open(self) -> None:
        if self._closing:
            raise RTAvatarError(f"{self.name} is closed")

    def _pad_to_frame(self) -> None:
        r = self.audio.samples % SAMPLES_PER_FRAME
        if r:
            self.audio.append(np.zeros(SAMPLES_PER_FRAME - r, np.float32))

    @staticmethod
    def _drain(q: queue.Queue) -> None:
        try:
            while True:
                q.get_nowait()
        except queue.Empty:
            pass

    def plan_next(self) -> _Chunk | None:
        """Plan the next chunk now, without running it (the features stage's planning, callable
        on a session made with start=False): its start, new frames, states and controls, or None
        when it must wait for audio."""
        with self._lock:
            if self._closing and self._next >= self._flush_to:
                return None
            return self._plan()

    def _plan(self) -> _Chunk | None:
        """The next chunk to generate, or None if it must wait for audio (lock held)."""
        first = self._restart
        steady = self.schedule.length(self._chunk_index, self.max_new)
        if self.schedule.idle and self._last_state != STATE_ID["speak"]:
            steady = min(steady, self.schedule.idle)  # not speaking: short chunks, so speech need not wait behind one
        want = self.schedule.first if first else steady
        start = self._next
        if start < self._flush_to:  # flushed audio: generate it all, nothing more is coming for it
            n, zero_after = min(want, self._flush_to - start), self._flush_to * SAMPLES_PER_FRAME
        else:
            la = int(self.schedule.first_lookahead_ms * SAMPLE_RATE / 1000) if first else self.audio.lookahead_samples
            n = min(want, max(0, (self.audio.samples - la) // SAMPLES_PER_FRAME - start))
            zero_after = None
            if n < want and self.live and n >= 1 and self._live_due(LIVE_LEAD):
                pass  # the reader needs frames soon: a shorter chunk of what is ready, rather than wait
            elif n < want:
                if self.live and self._live_due(LIVE_STARVING):  # nothing ready in time: the face idles on silence
                    # A steady chunk of silence plus its look-ahead (also silence), so idle frames
                    # come in steady-length chunks rather than as a run of short first chunks.
                    self._pad_to_frame()
                    need = (start + steady) * SAMPLES_PER_FRAME + self.audio.lookahead_samples
                    self.audio.append(np.zeros(max(0, need - self.audio.samples), np.float32))
                    return self._plan()
                return None
        cut = next((at for at, _ in self._states if start < at < start + n), None)
        if cut is not None:  # a chunk never straddles a state change: the new state starts a (short) chunk
            n = cut - start
        if first:
            zero_after = min(zero_after or 1 << 62, (start + n) * SAMPLES_PER_FRAME
                             + int(self.schedule.first_lookahead_ms * SAMPLE_RATE / 1000))
        context = [i for i in range(start - self.motion, start) if i >= 0]
        chunk = _Chunk(self._epoch, start, context, self.audio.frame_audio(start, start + n), zero_after, t_plan=time.perf_counter())
        states = []  # causal, frame by frame
        for i in range(n):
            auto = self._tracker.update(chunk.audio[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME])
            fixed = self._value_at(self._states, start + i)
            states.append(STATE_ID[fixed] if fixed != "auto" else auto)
        if states[0] != self._last_state and not first:
            self._chunk_index = 1  # the state changed: grow again from short chunks
        self._last_state = states[-1]
        chunk.states = np.array(states, np.int64)
        chunk.controls = np.stack([self._value_at(self._exprs, start + i) for i in range(n)])
        oldest = min(self._shown, start)  # an interrupt rewinds to the last frame read, never before
        self._states, self._exprs = self._since(self._states, oldest), self._since(self._exprs, oldest)
        self._next = start + n
        self._chunk_index += 1
        self._restart = self._next == self._flush_to  # after an utterance's end the next one starts short
        return chunk

    def _live_due(self, lead: float) -> bool:
        """Live: is frame `_next` due within `lead` seconds on the reader's clock? The clock
        starts when the reader takes frame 0. Short chunks of ready speech go out LIVE_LEAD
        ahead; silence is inserted only when the reader is about to run dry (LIVE_STARVING),
        so speech streamed in real time is not cut by idle frames, and idle frames are made at
        25 fps, not flat out."""
        if self._t0 is None:
            return True  # nothing read yet: make the first frames now
        return time.perf_counter() >= self._t0 + self._next / FPS - lead

    # ------------------------------------------------------------------ stages
    def _features(self) -> _Chunk | None:
        """Wait for and plan the next chunk, then compute its audio tokens (the features stage)."""
        with self._lock:
            while True:
                if self._closing and self._next >= self._flush_to:
                    return None
                chunk = self._plan()
                if chunk is not None:
                    break
                self._lock.wait(timeout=0.02 if self.live else None)
            window = self.audio.window(chunk.start - len(chunk.context), chunk.start + chunk.new, chunk.zero_after)
            speech = self.mouth.window(self.audio, chunk.start, chunk.start + chunk.new, chunk.zero_after) if self.mouth else None
            self.audio.forget_before(max(0, min(self._shown, chunk.start) - self.motion))
        t = time.perf_counter()
        chunk.tokens = self.audio.encode(*window)
        if self.mouth is not None:
            chunk.mouth = self.mouth.offsets(speech)
        chunk.t_features = time.perf_counter()
        self.times.features += chunk.t_features - t
        return chunk

    def _denoise(self, chunk: _Chunk) -> _Chunk | None:
        with self._lock:
            if chunk.epoch != self._epoch:
                return None
            ctx_ids = [i for i in chunk.context if i in self._latents]
            ctx = [self._latents[i][0] for i in ctx_ids]
            ctx_states = [self._latents[i][1] for i in ctx_ids]
            ctx_controls = [self._latents[i][2] for i in ctx_ids]
            k_drop = len(chunk.context) - len(ctx_ids)
        t = chunk.t_denoise = time.perf_counter()
        dev = self.sampler.device
        if self.skip_denoise:
            lat = torch.zeros(1, chunk.new, *self.sampler.latent_shape, device=dev)
        else:
            tokens = chunk.tokens[:, k_drop:]  # type: ignore[index]
            k = len(ctx)
            context = torch.stack(ctx)[None] if ctx else torch.zeros(1, 0, *self.sampler.latent_shape, device=dev)
            states = np.concatenate([np.array(ctx_states, np.int64), chunk.states])  # type: ignore[list-item]
            st = torch.from_numpy(states)[None].to(dev)
            ctl = torch.from_numpy(np.concatenate([np.array(ctx_controls, np.float32).reshape(k, chunk.controls.shape[1]), chunk.controls]))[None].to(dev)  # type: ignore[list-item]
            lat = self.sampler.sample(self.ref, context, tokens, st, ctl, self._gen)
        chunk.t_denoised = time.perf_counter()
        self.times.denoise += chunk.t_denoised - t
        with self._lock:
            if chunk.epoch != self._epoch:
                return None
            for j in range(chunk.new):
                self._latents[chunk.start + j] = (lat[0, j], int(chunk.states[j]), chunk.controls[j])  # type: ignore[index]
            for old in [i for i in self._latents if i < min(self._shown, chunk.start) - self.motion]:
                del self._latents[old]  # an interrupt can rewind to the last frame read, not further
        chunk.latents = lat
        return chunk

    def _decode(self, chunk: _Chunk) -> None:
        if self._stale(chunk):  # cut while it waited: its frames would be dropped, and speech waits behind it
            return
        t = time.perf_counter()
        if self.renderer is None:
            images = list(self.sampler.decode(self.ref, chunk.latents))  # type: ignore[arg-type]
        else:
            images = render_chunk(self.renderer, self.sampler, self.ref, chunk.latents, chunk.start,  # type: ignore[arg-type]
                                  chunk.states, chunk.controls, stale=lambda: self._stale(chunk), mouth=chunk.mouth)  # type: ignore[arg-type]
            if images is None:
                return
        t_decoded = time.perf_counter()
        self.times.decode += t_decoded - t
        self.trace.append({"start": chunk.start, "new": chunk.new, "state": STATES[int(chunk.states[0])], "epoch": chunk.epoch,  # type: ignore[index]
                           "plan": chunk.t_plan, "features": chunk.t_features, "denoise": chunk.t_denoise,
                           "denoised": chunk.t_denoised, "decoded": t_decoded})
        self.times.frames += chunk.new
        self.times.chunks.append(chunk.new)
        for j in range(chunk.new):
            i = chunk.start + j
            a = chunk.audio[j * SAMPLES_PER_FRAME : (j + 1) * SAMPLES_PER_FRAME]
            frame = Frame(i, i / FPS, images[j], a, STATES[int(chunk.states[j])])  # type: ignore[index]
            if i == 0 and self.first_frame_at is None:
                self.first_frame_at = time.perf_counter()
            if self._stale(chunk):
                return
            self._out.put((chunk.epoch, frame))

    def _stale(self, chunk: _Chunk) -> bool:
        with self._lock:
            return chunk.epoch != self._epoch

    def _guard(self, fn: Callable, inq: queue.Queue | None, outq: queue.Queue | None) -> None:
        try:
            if self._stage_threads.get(fn.__name__):
                torch.set_num_threads(min(self._stage_threads[fn.__name__], torch.get_num_threads()))
            fn(inq, outq)
        except BaseException as e:  # surfaces in frames(); the other stages stop
            log.exception("%s: stage %s failed", self.name, fn.__name__)
            self._error = e
            with self._lock:
                self._closing = True
                self._lock.notify_all()
            for q in (getattr(self, "_q1", None), getattr(self, "_q2", None)):
                if q is not None:
                    try:
                        q.put_nowait(None)
                    except queue.Full:
                        pass
            self._out.put(None)

    def _run_sequential(self, _inq: queue.Queue | None, _outq: queue.Queue | None) -> None:
        while (chunk := self._features()) is not None:
            if (chunk := self._denoise(chunk)) is not None:
                self._decode(chunk)
        self._out.put(None)

    def _run_features(self, _inq: queue.Queue | None, outq: queue.Queue) -> None:
        while (chunk := self._features()) is not None:
            outq.put(chunk)
        outq.put(None)

    def _run_denoise(self, inq: queue.Queue, outq: queue.Queue) -> None:
        while (chunk := inq.get()) is not None:
            if (chunk := self._denoise(chunk)) is not None:
                outq.put(chunk)
        outq.put(None)

    def _run_decode(self, inq: queue.Queue, _outq: queue.Queue | None) -> None:
        while (chunk := inq.get()) is not None:
            self._decode(chunk)
        self._out.put(None)

