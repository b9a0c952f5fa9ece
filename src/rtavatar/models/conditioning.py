"""What the denoiser is conditioned on, and the vocabulary of those inputs.

`Conditioning` is the denoiser's input bundle. Beside it: the state labels, the named
expression controls with their neutral values and model-facing scales, and the two ways of
turning audio into per-frame states: `offline_states` (sees the whole file) and
`StateTracker` (causal, for a stream). Units of every control: docs/DATA.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from torch import Tensor

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError

if TYPE_CHECKING:
    from rtavatar.models.dit import ReferenceCache

STATES = ("speak", "listen", "idle")
STATE_ID = {s: i for i, s in enumerate(STATES)}
# Expression controls: the slow, user-settable part of the face (LLIA's fine-grained control).
CONTROLS = ("smile", "brow_raise", "eye_open_l", "eye_open_r", "yaw", "pitch", "roll")
NEUTRAL = {"smile": 0.1, "brow_raise": 0.0, "eye_open_l": 1.0, "eye_open_r": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0}
# Model-facing scale of each control: angles in degrees / 20, the rest as stored.
CONTROL_SCALE = np.array([1.0 if k not in ("yaw", "pitch", "roll") else 1.0 / 20.0 for k in CONTROLS], np.float32)
# Values outside these ranges were never seen in training (docs/DATA.md); they are refused.
CONTROL_LIMITS = {"smile": (-1.0, 1.5), "brow_raise": (-1.0, 1.0), "eye_open_l": (0.0, 1.5), "eye_open_r": (0.0, 1.5),
                  "yaw": (-45.0, 45.0), "pitch": (-30.0, 30.0), "roll": (-30.0, 30.0)}


@dataclass
class Conditioning:
    """Everything the denoiser is conditioned on. Shapes use B batch, F frames.

    audio: (B, F, 2W+1, audio_dim) windowed audio features (or None = unconditional)
    state: (B, F) long in [0, n_states) (or None = dropped)
    controls: (B, F, n_controls) (or None = dropped)
    guidance: (B,) guidance scale fed to a distilled student (None = 0, the teacher's value)
    ref_cache: `DiT.encode_reference` output (per-layer K/V + input tokens), the per-avatar cache
    ref_latent: (B, C, H, W) reference latent, encoded on every call when ref_cache is not given
    (neither = the null reference, used for CFG on the reference)
    """

    audio: Tensor | None = None
    state: Tensor | None = None
    controls: Tensor | None = None
    guidance: Tensor | None = None
    ref_cache: "ReferenceCache | None" = None
    ref_latent: Tensor | None = None
    # Per-sample classifier-free-guidance dropout (training): False = use the null input.
    keep_audio: Tensor | None = None
    keep_controls: Tensor | None = None
    keep_ref: Tensor | None = None

    def replace(self, **changes: object) -> "Conditioning":
        return Conditioning(**{**self.__dict__, **changes})


def state_id(state: str) -> int:
    if state not in STATE_ID:
        raise RTAvatarError(f"unknown state {state!r}; use {', '.join(STATES)}")
    return STATE_ID[state]


def check_expression(expression: dict[str, float]) -> dict[str, float]:
    """Validate named controls (known names, finite numbers inside CONTROL_LIMITS)."""
    out = {}
    for key, val in expression.items():
        if key not in CONTROLS:
            raise RTAvatarError(f"unknown expression control {key!r}; use {', '.join(CONTROLS)}")
        try:
            x = float(val)
        except (TypeError, ValueError) as e:
            raise RTAvatarError(f"expression {key}: {val!r} is not a number") from e
        lo, hi = CONTROL_LIMITS[key]
        if not math.isfinite(x) or not lo <= x <= hi:
            raise RTAvatarError(f"expression {key}={val} is outside [{lo:g}, {hi:g}]")
        out[key] = x
    return out


def parse_expression(text: str | None) -> dict[str, float]:
    """'smile=0.5,yaw=10' -> {'smile': 0.5, 'yaw': 10.0} (names from docs/DATA.md)."""
    raw: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, val = part.partition("=")
        raw[key.strip()] = val  # type: ignore[assignment]  # check_expression converts
    return check_expression(raw)


def control_vector(expression: dict[str, float] | None = None) -> np.ndarray:
    """(n_controls,) model-scale control vector: NEUTRAL overridden by `expression`."""
    values = {**NEUTRAL, **(expression or {})}
    return np.array([values[k] for k in CONTROLS], np.float32) * CONTROL_SCALE


def named_controls(vector: np.ndarray) -> dict[str, float]:
    """A (n_controls,) model-scale control vector -> the named controls in user units (docs/DATA.md)."""
    return {k: float(v) for k, v in zip(CONTROLS, np.asarray(vector, np.float64) / CONTROL_SCALE)}


def frame_rms(audio: np.ndarray, n_frames: int) -> np.ndarray:
    a = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    a[: min(len(audio), len(a))] = audio[: len(a)]
    return np.sqrt((a.reshape(n_frames, -1) ** 2).mean(1))


def offline_states(audio: np.ndarray, n_frames: int, state: str) -> np.ndarray:
    """Per-frame state of a whole file: fixed, or 'auto' = speak where the frame has speech
    energy (threshold from the file's own loudness), else idle; pauses < 0.4 s held."""
    if state != "auto":
        return np.full(n_frames, state_id(state), np.int64)
    rms = frame_rms(audio, n_frames)
    voiced = rms > max(0.01, 0.1 * float(np.percentile(rms, 95)))
    held = np.convolve(voiced.astype(float), np.ones(10), mode="same") > 0
    return np.where(held, STATE_ID["speak"], STATE_ID["idle"]).astype(np.int64)


class StateTracker:
    """Causal speak/idle (or listen) labels for a stream of frames' audio.

    A frame is voiced when its RMS exceeds max(floor, rel x the running peak), the peak
    decaying with a half-life of `peak_half_life` frames; speech is held `hold` frames after
    the last voiced frame (the offline detector's 0.4 s, but one-sided), so a pause between
    words does not flicker. Silence maps to `quiet` ('idle'; 'listen' after a barge-in).
    `voiced`, when given, replaces the energy rule: a per-frame detector (engine/vad.py's
    silero-vad) called on each frame's 640 samples in order.
    """

    def __init__(self, floor: float = 0.01, rel: float = 0.1, hold: int = 10, peak_half_life: float = 250.0,
                 voiced: Callable[[np.ndarray], bool] | None = None) -> None:
        self.floor, self.rel, self.hold, self.voiced = floor, rel, hold, voiced
        self.decay = 0.5 ** (1.0 / peak_half_life)
        self.peak = 0.0
        self.since_voice = hold + 1
        self.quiet = "idle"

    def update(self, frame_audio: np.ndarray) -> int:
        """State id of the next frame given its 640 samples."""
        if self.voiced is not None:
            voiced = bool(self.voiced(frame_audio))
        else:
            rms = float(np.sqrt(np.mean(np.square(frame_audio, dtype=np.float64)))) if len(frame_audio) else 0.0
            self.peak = max(rms, self.peak * self.decay)
            voiced = rms > max(self.floor, self.rel * self.peak)
        self.since_voice = 0 if voiced else self.since_voice + 1
        if voiced:
            self.quiet = "idle"  # new speech ends a barge-in's listening
        return STATE_ID["speak"] if self.since_voice <= self.hold else STATE_ID[self.quiet]

    def reset(self, quiet: str = "idle") -> None:
        self.since_voice = self.hold + 1
        self.quiet = quiet
        reset = getattr(self.voiced, "reset", None)
        if reset is not None:  # a stateful detector (silero) also heard the audio an interrupt drops
            reset()
