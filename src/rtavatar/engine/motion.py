"""The session's mouth track: a MotionNet (models/motion.py) run on the streaming audio.

Each chunk's offsets are computed from the timeline's audio of the chunk's frames plus
`MotionConfig.context` frames before them and the net's look-ahead after them (silence where the timeline
has none yet, or after a flush), the same span whether the chunk came from a file or a live
stream. The Whisper encoder sees that span as one window, bidirectionally, so a frame's
offsets depend on where it sits in its window; `rtavatar train motion` trains on exactly these
windows (training/motion.py), and the stream never waits for more than the net's look-ahead.

With `MotionConfig.voice_gate` (off by default; `rtavatar export --motion RUN --voice-gate`) the
offsets are then scaled by a speech gate from silero-vad run on the same window (`voice_gate`):
the mouth rests in every pause, but for a short lead-in before speech and a hangover after it.
It is a trade, measured in docs/RESULTS.md: GRID's speakers part their lips widely half a
second before a sentence, and the gate costs the gap correlation with real people on such
clips what it gains in pauses.
"""

from __future__ import annotations

import numpy as np
import torch

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.engine.audio import StreamingAudio
from rtavatar.engine.vad import SileroStream, frame_speech
from rtavatar.models.motion import LIP_POINTS, MotionNet

VOICE_THRESHOLD = 0.5  # silero's speech probability
GATE_LEAD = 6  # frames over which the gate opens before speech: lips part for breath before the voice starts ...
GATE_HANGOVER = 2  # ... and close soon after it stops (docs/RESULTS.md: measured on GRID's speakers)


def voice_gate(probs: np.ndarray, n: int, threshold: float = VOICE_THRESHOLD, lead: int = GATE_LEAD,
               hangover: int = GATE_HANGOVER) -> np.ndarray:
    """(n,) gate in [0, 1] per 40 ms frame from silero's probabilities per 512-sample window:
    1 on a frame with speech (a window overlapping it above `threshold`) and for `hangover`
    frames after it; rising linearly over the `lead` frames before it (1 - k / (lead + 1), k
    frames ahead); 0 in the rest of a pause; then smoothed by [1, 2, 1] / 4."""
    padded = np.pad(frame_speech(probs, n, threshold).astype(np.float32), (hangover, lead))
    ahead = [padded[hangover + k : hangover + k + n] * (1 - k / (lead + 1)) for k in range(lead + 1)]
    behind = [padded[hangover - k : hangover - k + n] for k in range(1, hangover + 1)]
    gate = np.max(ahead + behind, axis=0)
    return np.convolve(np.pad(gate, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid").astype(np.float32)


class MotionTrack:
    def __init__(self, net: MotionNet) -> None:
        self.net = net
        self.before = net.cfg.context  # frames of audio before a chunk in its window
        self.after = net.future_frames  # ... and after it
        self.vad = SileroStream() if net.cfg.voice_gate else None
        self.lips = [k for k, p in enumerate(net.cfg.points) if p in LIP_POINTS]  # whose x `width_gain` scales

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
        out = (self.net.predict(torch.from_numpy(window)[None])[0, self.before : self.before + n] * self.net.cfg.gain).numpy()
        out[:, self.lips, 0] *= self.net.cfg.width_gain
        if self.vad is not None:  # silero from a fresh state on the window alone: the same gate for a file and a stream
            self.vad.reset()
            gate = voice_gate(np.asarray(self.vad.push(window)), len(window) // SAMPLES_PER_FRAME)
            out = out * gate[self.before : self.before + n, None, None]
        return out.astype(np.float32)

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
