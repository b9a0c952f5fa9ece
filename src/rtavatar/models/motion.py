"""MotionNet: speech -> how a real mouth and jaw move, frame by frame.

The articulation a photo renderer needs is the shape of the mouth, not its loudness: the
lips close for m/b/p inside loud speech, round for o/u/w, spread for i/e, and the jaw drops
with open vowels. MotionNet predicts, for every 40 ms video frame, the offsets of MOTION_POINTS
(dlib's jaw 4-12 and lips 48-67) from the speaker's mouth at rest, in the face's own axes
(origin the eye midpoint, x along the eye line, y down) in inter-ocular distances (IOD). It
is trained on real talking video (`rtavatar train motion`: GRID's real landmarks under
real speech, docs/TRAINING.md), so the renderer can move a photo's lips and jaw the way a
person's move, and the DiT's "what is said" conditioning has a measurable target.

The audio front is an `AudioConfig` encoder (models/audio.py): the frozen Whisper tiny.en
encoder (its features are what generalise to voices never heard in training) or the log-mel
conv stack. A stack of 1-D convolutions over frames follows, padded mostly on the past side:
the frames of future audio it sees add up to `lookahead` (the streaming latency it costs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar.models.audio import AudioConfig, MelAudioEncoder, WhisperAudioEncoder, build_audio_encoder

JAW_POINTS = tuple(range(4, 13))  # the lower jaw outline, 8 = chin
LIP_POINTS = tuple(range(48, 68))  # outer 48-59, inner 60-67
MOTION_POINTS = JAW_POINTS + LIP_POINTS
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))  # (upper, lower) inner-lip points, as photo.landmarks


def shape_gap(offsets: np.ndarray, points: tuple[int, ...] = MOTION_POINTS) -> np.ndarray:
    """The change of the inner-lip gap (IOD) that (..., P, 2) offsets of `points` make."""
    pos = {p: k for k, p in enumerate(points)}
    return sum(offsets[..., pos[b], 1] - offsets[..., pos[a], 1] for a, b in INNER_PAIRS) / len(INNER_PAIRS)


@dataclass
class MotionConfig:
    audio: AudioConfig = field(default_factory=lambda: AudioConfig(kind="whisper-tiny", dim=192))
    hidden: int = 192
    layers: int = 4
    kernel: int = 5
    lookahead: int = 4  # video frames of future audio the conv stack sees (160 ms)
    context: int = 25  # frames of past audio in each window a session encodes (engine/motion.py; trained on exactly these)
    window_future: int = 0  # frames of future audio in each window, if more than `lookahead` (the encoder is bidirectional: a file can afford more)
    dropout: float = 0.1
    center_window: bool = False  # Whisper features minus their mean over the window a session encodes (a per-window voice/channel normalisation)
    points: tuple[int, ...] = MOTION_POINTS
    gain: float = 1.0  # inference: offsets x gain (a regression under-shoots; set at export from held-out speakers)
    width_gain: float = 1.0  # inference: the lips' sideways offsets x this too (set at export from held-out speakers' width std)
    voice_gate: bool = False  # inference: offsets x silero-vad's speech gate, so every pause rests (engine/motion.voice_gate)

    def __post_init__(self) -> None:
        self.points = tuple(self.points)
        if self.lookahead > self.layers * (self.kernel - 1):
            raise ValueError(f"lookahead {self.lookahead} > what {self.layers} convs of kernel {self.kernel} can see")


class MotionNet(nn.Module):
    """Speech -> (B, T, len(points), 2) offsets from rest, IOD, face axes (`predict`)."""

    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio = build_audio_encoder(AudioConfig(**{**cfg.audio.__dict__, "dim": cfg.hidden}))
        self.convs = nn.ModuleList(nn.Conv1d(cfg.hidden, cfg.hidden, cfg.kernel) for _ in range(cfg.layers))
        # Normalised per frame over channels (a norm over time would let every frame see the whole window).
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers))
        self.out = nn.Linear(cfg.hidden, 2 * len(cfg.points))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Future frames per conv: spread the look-ahead over the first layers.
        left, self._future = cfg.lookahead, []
        for _ in range(cfg.layers):
            f = min(left, cfg.kernel - 1)
            self._future.append(f)
            left -= f

    @property
    def lookahead_samples(self) -> int:
        """Future audio a frame's offsets depend on beyond its own 40 ms (conv stack + encoder)."""
        enc = self.audio.lookahead_samples if isinstance(self.audio, MelAudioEncoder) else 0
        return max(self.cfg.lookahead, self.cfg.window_future) * 640 + enc

    @property
    def future_frames(self) -> int:
        """Whole frames of audio after a frame that its offsets can depend on."""
        return -(-self.lookahead_samples // 640)

    @torch.no_grad()
    def frozen(self, wav: Tensor) -> Tensor:
        """The part of the audio front that does not train: Whisper features (B, T, 768), or
        the waveform itself for the mel encoder (its filterbank is cheap to recompute)."""
        if isinstance(self.audio, WhisperAudioEncoder):
            return self.audio.features(wav)
        return wav

    def encode(self, frozen: Tensor) -> Tensor:
        """`frozen` -> per-frame features (B, T, hidden)."""
        if isinstance(self.audio, WhisperAudioEncoder):
            return self.audio.proj(frozen - frozen.mean(1, keepdim=True) if self.cfg.center_window else frozen)
        return self.audio(frozen)

    def head(self, feats: Tensor) -> Tensor:
        """(B, T, hidden) -> (B, T, P, 2)."""
        x = feats.transpose(1, 2)
        k = self.cfg.kernel
        for conv, norm, f in zip(self.convs, self.norms, self._future):
            y = norm(conv(F.pad(x, (k - 1 - f, f), mode="replicate")).transpose(1, 2)).transpose(1, 2)
            x = x + F.dropout(F.gelu(y), self.cfg.dropout, self.training)
        b, _, t = x.shape
        return self.out(x.transpose(1, 2)).reshape(b, t, len(self.cfg.points), 2)

    def forward(self, frozen: Tensor) -> Tensor:
        """`frozen` (see `frozen`) -> (B, T, P, 2); what training wraps (DDP calls forward)."""
        return self.head(self.encode(frozen))

    def predict(self, wav: Tensor) -> Tensor:
        """wav (B, T * 640) -> (B, T, P, 2)."""
        return self(self.frozen(wav))
