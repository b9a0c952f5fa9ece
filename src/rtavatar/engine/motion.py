"""The session's mouth track: a MotionNet (models/motion.py) run on the streaming audio.

Each chunk's offsets are computed from the timeline's audio of the chunk's frames plus
`MotionConfig.context` frames before them and the net's look-ahead after them (silence where the timeline
has none yet, or after a flush), the same span whether the chunk came from a file or a live
stream. The Whisper encoder sees that span as one window, bidirectionally, so a frame's
offsets depend on where it sits in its window; `rtavatar train motion` trains on exactly these
windows (training/motion.py), and the stream never waits for more than the net's look-ahead.
"""

from __future__ import annotations

import numpy as np
import torch

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.engine.audio import StreamingAudio
from rtavatar.models.motion import MotionNet

class MotionTrack:
    def __init__(self, net: MotionNet) -> None:
        self.net = net
        self.before = net.cfg.context  # frames of audio before a chunk in its window
        self.after = net.future_frames  # ... and after it

    @property
    def lookahead_samples(self) -> int:
        return self.net.lookahead_samples

    def window(self, audio: StreamingAudio, i0: int, i1: int, zero_after: int | None = None) -> np.ndarray:
        """The audio frames [i0, i1)'s offsets depend on (a copy: take it under the session's lock)."""
        return audio.span(i0 - self.before, i1 + self.after, zero_after)

    @torch.no_grad()
    def offsets(self, window: np.ndarray) -> np.ndarray:
        """(n, P, 2) offsets from rest (IOD, face axes), times the net's gain, of the n frames a `window` was taken for."""
        n = len(window) // SAMPLES_PER_FRAME - self.before - self.after
        out = self.net.predict(torch.from_numpy(window)[None])[0, self.before : self.before + n] * self.net.cfg.gain
        return out.numpy().astype(np.float32)

    def clip_offsets(self, audio: "StreamingAudio | ArrayTimeline", n: int, chunk: int) -> np.ndarray:
        """(n, P, 2) offsets of frames [0, n) of a timeline that holds all its audio, `chunk`
        frames at a time: the windows a session takes (so a file and a stream give the same mouth)."""
        return np.concatenate([self.offsets(self.window(audio, i, min(i + chunk, n), n * SAMPLES_PER_FRAME))
                               for i in range(0, n, chunk)]) if n else np.zeros((0, len(self.net.cfg.points), 2), np.float32)


class ArrayTimeline:
    """A whole clip's samples with StreamingAudio's `span` (silence outside them): what
    `MotionTrack.clip_offsets` reads a file from."""

    def __init__(self, wav: np.ndarray) -> None:
        self.wav = np.asarray(wav, np.float32)

    def span(self, i0: int, i1: int, zero_after: int | None = None) -> np.ndarray:
        out = np.zeros((i1 - i0) * SAMPLES_PER_FRAME, np.float32)
        end = len(self.wav) if zero_after is None else min(len(self.wav), zero_after)
        a, b = max(i0 * SAMPLES_PER_FRAME, 0), min(i1 * SAMPLES_PER_FRAME, end)
        if b > a:
            out[a - i0 * SAMPLES_PER_FRAME : b - i0 * SAMPLES_PER_FRAME] = self.wav[a:b]
        return out
