"""Voice activity for a stream: silero-vad (the `silero-vad` package ships its model), causal.

`SileroVoice` is a per-frame detector for `StateTracker`: a Session's `auto` state uses it on
the audio the avatar speaks (`Avatar.session(voice="silero")`), so music, breathing or noise as
loud as speech does not make the face talk, where the energy rule would. The server uses it on
the user's microphone too (`SileroStream.push`), and the MotionNet's mouth rests by its gate
(engine/motion.voice_gate).
"""

from __future__ import annotations

import numpy as np

from rtavatar import SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError

WINDOW = 512  # samples silero-vad takes at 16 kHz (32 ms)
VOICES = ("energy", "silero")  # what a Session's `auto` state can listen with


class SileroStream:
    """silero-vad over any pushes of 16 kHz float32 audio: one speech probability per 512 samples."""

    def __init__(self) -> None:
        try:
            from silero_vad import load_silero_vad
        except ImportError as e:
            raise RTAvatarError("silero-vad is not installed: pip install 'rtavatar[serve]' (or silero-vad)") from e
        self.model = load_silero_vad()
        self.buf = np.zeros(0, np.float32)

    def push(self, pcm: np.ndarray) -> list[float]:
        import torch

        self.buf = np.concatenate([self.buf, np.asarray(pcm, np.float32)])
        probs = []
        while len(self.buf) >= WINDOW:
            chunk, self.buf = self.buf[:WINDOW], self.buf[WINDOW:]
            with torch.no_grad():
                probs.append(float(self.model(torch.from_numpy(chunk.copy()), SAMPLE_RATE)))
        return probs

    def reset(self) -> None:
        """Forget the audio so far (the model's recurrent state and the partial window)."""
        self.model.reset_states()
        self.buf = np.zeros(0, np.float32)


def frame_speech(probs: np.ndarray, n: int, threshold: float = 0.5) -> np.ndarray:
    """(n,) bool per 40 ms frame: a silero window (512 samples) overlapping the frame has speech
    probability above `threshold` (`probs`: one per window, in order from sample 0)."""
    starts = np.arange(len(probs)) * WINDOW
    out = np.zeros(n, bool)
    for i in range(n):
        hit = probs[(starts < (i + 1) * SAMPLES_PER_FRAME) & (starts + WINDOW > i * SAMPLES_PER_FRAME)]
        out[i] = bool(hit.size) and float(hit.max()) > threshold
    return out


class SileroVoice:
    """Frame audio (640 samples) -> voiced? True when a silero window (512 samples) ending in
    the frame has speech probability above `threshold`; a 640-sample frame always ends one
    or two windows, so every verdict is the frame's own (`last` only covers shorter pushes)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.stream, self.threshold, self.last = SileroStream(), threshold, False

    def __call__(self, frame_audio: np.ndarray) -> bool:
        probs = self.stream.push(frame_audio)
        if probs:
            self.last = max(probs) > self.threshold
        return self.last

    def reset(self) -> None:
        """After a barge-in the audio it heard past the cut is gone: so is its verdict."""
        self.stream.reset()
        self.last = False


def check_voice(kind: str) -> str:
    """`kind` if it names a detector (VOICES), else the clear error."""
    if kind not in VOICES:
        raise RTAvatarError(f"unknown voice detector {kind!r}; use {' or '.join(repr(v) for v in VOICES)}")
    return kind


def voice_detector(kind: str):  # noqa: ANN201 - a callable or None (StateTracker's energy rule)
    """'energy' (the default rule, no dependency) or 'silero'."""
    return SileroVoice() if check_voice(kind) == "silero" else None
