"""Streaming audio features: new audio is encoded without re-encoding the past.

The mel encoder's features for a video frame depend on a bounded stretch of audio: a few
frames of past (the conv stack, 12 mel frames, and the STFT window) and
`lookahead_samples` of future. So the features of frames [a, b) are computed from a window
of `CONTEXT` frames before a to one frame after b, and equal (to float rounding) the
offline encoder's on the whole file (tests/test_engine.py). The DiT then reads each frame's
features in a window of +-W frames, so a frame can be generated once its audio plus
W x 40 ms + the encoder's look-ahead has arrived (`lookahead_ms`).

The stream is kept in the offline layout: `audio_margin` frames of zeros before the first
sample, so frame i's window is exactly the offline one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rtavatar import SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.models.audio import MelAudioEncoder
from rtavatar.models.avatarnet import AvatarNet

CONTEXT = 4  # past frames in each encoder window (the mel stack's receptive field is < 3.2 frames)
WIDE_CONTEXT = 25  # for bidirectional encoders (whisper): 1 s each side, an approximation


class StreamingAudio:
    """The session's audio timeline and its features."""

    def __init__(self, net: AvatarNet, extra_lookahead: int = 0, extra_past: int = 0) -> None:
        """`extra_lookahead` samples / `extra_past` frames: what another reader of the timeline
        (the session's MotionNet) needs beyond the DiT's own window."""
        self.net = net
        self.m, self.w = net.cfg.audio_margin, net.cfg.dit.audio_window
        enc = net.audio_enc
        self.exact = isinstance(enc, MelAudioEncoder)
        self.context = CONTEXT if self.exact else WIDE_CONTEXT
        self.encoder_lookahead = enc.lookahead_samples if self.exact else WIDE_CONTEXT * SAMPLES_PER_FRAME
        self.after = -(-self.encoder_lookahead // SAMPLES_PER_FRAME)  # whole frames of future per window
        self.extra_lookahead, self.extra_past = extra_lookahead, extra_past
        # The padded timeline from _start is _store[:_len]: appends copy into spare capacity
        # (doubling when full), so a push costs O(its length), not O(the buffer).
        self._store = np.zeros(max(self.m * SAMPLES_PER_FRAME, 1 << 14), np.float32)
        self._len = self.m * SAMPLES_PER_FRAME
        self._start = 0  # padded-timeline sample index of _store[0]

    @property
    def _buf(self) -> np.ndarray:
        return self._store[: self._len]

    # ------------------------------------------------------------------ timeline
    @property
    def lookahead_samples(self) -> int:
        """Audio needed beyond a frame's end before the frame can be generated."""
        return max(self.w * SAMPLES_PER_FRAME + self.encoder_lookahead, self.extra_lookahead)

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.lookahead_samples / SAMPLE_RATE

    @property
    def samples(self) -> int:
        """Audio samples on the timeline (pushed, plus silence the session inserted)."""
        return self._start + len(self._buf) - self.m * SAMPLES_PER_FRAME

    def append(self, pcm: np.ndarray) -> None:
        n = len(pcm)
        if not n:
            return
        if self._len + n > len(self._store):
            grown = np.zeros(max(2 * len(self._store), self._len + n), np.float32)
            grown[: self._len] = self._buf
            self._store = grown
        self._store[self._len : self._len + n] = pcm
        self._len += n

    def truncate(self, samples: int) -> None:
        """Drop the timeline after `samples` (interrupt)."""
        keep = samples + self.m * SAMPLES_PER_FRAME - self._start
        self._len = min(self._len, max(keep, 0))

    def frame_audio(self, i0: int, i1: int) -> np.ndarray:
        """The timeline's samples of frames [i0, i1) (zeros past its end)."""
        a = (i0 + self.m) * SAMPLES_PER_FRAME - self._start
        b = (i1 + self.m) * SAMPLES_PER_FRAME - self._start
        out = np.zeros(b - a, np.float32)
        seg = self._buf[max(a, 0) : b]
        out[max(-a, 0) : max(-a, 0) + len(seg)] = seg
        return out

    def ready_frames(self) -> int:
        """Frames whose features can be computed from the audio on the timeline."""
        return max(0, (self.samples - self.lookahead_samples) // SAMPLES_PER_FRAME)

    def forget_before(self, frame: int) -> None:
        """Free audio no longer needed for frames >= `frame` (bounded memory on long streams)."""
        keep_from = max(0, (frame + self.m - max(self.w + self.context, self.extra_past) - 1) * SAMPLES_PER_FRAME)
        cut = keep_from - self._start
        if cut > 0:
            rest = max(self._len - cut, 0)
            self._store[:rest] = self._store[cut : cut + rest].copy()  # capacity is kept for the next appends
            self._len = rest
            self._start = keep_from

    def span(self, i0: int, i1: int, zero_after: int | None = None) -> np.ndarray:
        """The samples of frames [i0, i1), i0 may be negative: silence before frame 0, past the
        timeline's end and after timeline sample `zero_after` (as `window`)."""
        out = self.frame_audio(max(i0, -self.m), i1)
        out = np.concatenate([np.zeros((max(i0, -self.m) - i0) * SAMPLES_PER_FRAME, np.float32), out])
        if zero_after is not None:
            out[max(zero_after - i0 * SAMPLES_PER_FRAME, 0):] = 0.0
        return out

    # ------------------------------------------------------------------ features
    def window(self, i0: int, i1: int, zero_after: int | None = None) -> tuple[np.ndarray, int, int]:
        """The audio the features of frames [i0, i1) depend on: (samples, first, last) where
        features [first, last) of the encoded samples are the frames' +-W windows. Audio past
        the timeline's end, or past timeline sample `zero_after`, counts as silence."""
        a, b = i0 + self.m - self.w, i1 + self.m + self.w  # padded feature indices [a, b)
        lo = max(0, a - self.context)
        seg = np.zeros((b + self.after - lo) * SAMPLES_PER_FRAME, np.float32)
        s0 = lo * SAMPLES_PER_FRAME - self._start
        if s0 < 0:
            raise RuntimeError("streaming audio: the needed past was already freed")
        src = self._buf[s0 : s0 + len(seg)]
        seg[: len(src)] = src
        if zero_after is not None:
            seg[max(zero_after + (self.m - lo) * SAMPLES_PER_FRAME, 0):] = 0.0
        return seg, a - lo, b - lo

    @torch.no_grad()
    def encode(self, seg: np.ndarray, first: int, last: int) -> Tensor:
        """Windowed tokens (1, last - first - 2W, 2W+1, D) of a `window`."""
        dev = next(self.net.parameters()).device
        feats = self.net.audio_enc(torch.from_numpy(seg)[None].to(dev))[:, first:last]
        return feats.unfold(1, 2 * self.w + 1, 1).permute(0, 1, 3, 2)

    def tokens(self, i0: int, i1: int, zero_after: int | None = None) -> Tensor:
        """Windowed audio tokens (1, i1 - i0, 2W+1, D) of frames [i0, i1)."""
        return self.encode(*self.window(i0, i1, zero_after))

