"""Conversation timeline and per-frame behaviour of a synthetic talking face.

A clip is a sequence of state segments (speak / listen / idle). Speech comes from espeak-ng;
every per-frame signal (mouth, expression, pose, gaze, blink) is derived from the timeline
with a seeded RNG, so the same seed always gives byte-identical ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter1d

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.data.speech import random_sentence, random_voice
from rtavatar.data.visemes import VOWEL_VISEMES, mouth_track, viseme_intervals
from rtavatar.models.conditioning import CONTROLS, STATE_ID, STATES  # noqa: F401  (re-exported)
from rtavatar.tts import Phoneme, Utterance, Voice, synthesize

_CONTROL_RANGE = {
    "smile": (0.1, 0.25, -0.5, 1.0), "brow_raise": (0.0, 0.25, -0.6, 0.8),
    "eye_open_l": (1.0, 0.08, 0.6, 1.25), "eye_open_r": (1.0, 0.08, 0.6, 1.25),
    "yaw": (0.0, 8.0, -25.0, 25.0), "pitch": (0.0, 5.0, -15.0, 15.0), "roll": (0.0, 4.0, -10.0, 10.0),
}  # name: (mean, std, min, max)
# State biases on the controls: listeners look attentive, idle faces relax.
_STATE_BIAS = {
    "speak": {},
    "listen": {"smile": 0.15, "brow_raise": 0.15, "eye_open_l": 0.08, "eye_open_r": 0.08},
    "idle": {"smile": -0.05, "eye_open_l": -0.06, "eye_open_r": -0.06},
}


@dataclass
class PlacedUtterance:
    utt: Utterance
    start: float  # seconds from clip start
    speaker: str  # "self" or "partner"

    @property
    def end(self) -> float:
        return self.start + self.utt.duration

    def phonemes(self) -> list[Phoneme]:
        return [Phoneme(p.ipa, p.start + self.start, p.end + self.start) for p in self.utt.phonemes]


@dataclass
class Timeline:
    duration: float
    segments: list[tuple[str, float, float]]  # (state, start, end)
    utterances: list[PlacedUtterance] = field(default_factory=list)
    voice: Voice = Voice()

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * FPS))


# Transition probabilities: every segment changes state; speech is about half of the footage.
_NEXT_STATE = {"speak": {"listen": 0.6, "idle": 0.4}, "listen": {"speak": 0.75, "idle": 0.25}, "idle": {"speak": 0.75, "listen": 0.25}}


def identity_voice(identity_seed: int) -> Voice:
    """Each identity keeps one voice across all its clips."""
    return random_voice(np.random.default_rng([identity_seed, 0x70CE]))


def make_timeline(rng: np.random.Generator, seconds: tuple[float, float], voice: Voice, split: str = "train") -> Timeline:
    """Sample state segments and speech until the clip is full; at least one state change."""
    duration = float(rng.uniform(*seconds))
    state = str(rng.choice(STATES, p=[0.5, 0.25, 0.25]))
    segments: list[tuple[str, float, float]] = []
    utts: list[PlacedUtterance] = []
    t = 0.0
    while t < duration:
        first = not segments
        # The first segment must leave room for a transition inside the clip.
        max_len = 0.65 * duration if first else np.inf
        if state == "idle":
            length = float(min(rng.uniform(1.0, 3.0), max_len))
        else:
            speaker_voice = voice if state == "speak" else random_voice(rng)
            pre = float(rng.uniform(0.15, 0.45))
            utt = synthesize(random_sentence(rng, split), speaker_voice)
            length = pre + utt.duration + float(rng.uniform(0.2, 0.5))
            if length > max_len:  # interrupted mid-sentence: cut the utterance (with a short fade)
                keep = max(0, int((max_len - pre - 0.1) * SAMPLE_RATE))
                audio = utt.audio[:keep].copy()
                fade = min(len(audio), 320)
                if fade:
                    audio[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
                cut_t = keep / SAMPLE_RATE
                phon = [Phoneme(p.ipa, p.start, min(p.end, cut_t)) for p in utt.phonemes if p.start < cut_t]
                utt = Utterance(utt.text, audio, phon, utt.voice)
                length = max_len
            utts.append(PlacedUtterance(utt, t + pre, "self" if state == "speak" else "partner"))
        segments.append((state, t, t + length))
        t += length
        nxt = _NEXT_STATE[state]
        state = str(rng.choice(list(nxt), p=list(nxt.values())))
    segments = [(s, a, min(b, duration)) for s, a, b in segments if a < duration]
    return Timeline(duration=duration, segments=segments, utterances=utts, voice=voice)


def render_audio(tl: Timeline, speaker: str) -> np.ndarray:
    """The speaker's track, exactly n_frames * 640 samples long."""
    n = tl.n_frames * SAMPLES_PER_FRAME
    out = np.zeros(n, np.float32)
    for pu in tl.utterances:
        if pu.speaker != speaker:
            continue
        a = int(round(pu.start * SAMPLE_RATE))
        seg = pu.utt.audio[: max(0, n - a)]
        out[a : a + len(seg)] += seg
    return out


def _smooth_keys(rng: np.random.Generator, n: int, mean: float, std: float, lo: float, hi: float, every: tuple[float, float]) -> np.ndarray:
    """Smooth random curve: keyframes every 1-2.5 s joined by monotone cubic (no overshoot)."""
    t_end = n / FPS
    knots = [0.0]
    while knots[-1] < t_end:
        knots.append(knots[-1] + float(rng.uniform(*every)))
    vals = np.clip(rng.normal(mean, std, len(knots)), lo, hi)
    return PchipInterpolator(knots, vals)(np.arange(n) / FPS)


def _bumps(n: int, centers: list[float], width: float, heights: list[float] | float = 1.0) -> np.ndarray:
    t = np.arange(n) / FPS
    out = np.zeros(n)
    hs = heights if isinstance(heights, list) else [heights] * len(centers)
    for c, h in zip(centers, hs):
        out += h * np.exp(-0.5 * ((t - c) / width) ** 2)
    return out


def frame_energy(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """RMS per 40 ms frame."""
    a = audio[: n_frames * SAMPLES_PER_FRAME].reshape(n_frames, SAMPLES_PER_FRAME)
    return np.sqrt((a.astype(np.float64) ** 2).mean(axis=1))


def blink_curve(rng: np.random.Generator, n: int, per_minute: float = 17.0) -> np.ndarray:
    """Blinks at ~17/min (gamma-distributed gaps): 80 ms closing, 40 ms closed, 160 ms opening.

    The closed hold means every blink shows at least one fully closed frame at 25 fps.
    """
    t = (np.arange(n) + 0.5) / FPS
    out = np.zeros(n)
    closing, hold, opening = 0.08, 0.04, 0.16
    s = float(rng.uniform(0.2, 2.5))
    while s < n / FPS:
        rise = np.clip((t - s) / closing, 0, 1)
        fall = np.clip(1 - (t - s - closing - hold) / opening, 0, 1)
        out = np.maximum(out, np.minimum(rise, fall) * (t >= s))
        s += closing + hold + opening + float(rng.gamma(2.0, 60.0 / per_minute / 2.0))
    return out


def frame_signals(tl: Timeline, rng: np.random.Generator, blink_per_minute: float = 17.0) -> dict[str, np.ndarray]:
    """Every per-frame ground-truth column of docs/DATA.md."""
    n = tl.n_frames
    t = (np.arange(n) + 0.5) / FPS
    state = np.zeros(n, np.int64)
    for name, a, b in tl.segments:
        state[(t >= a) & (t < b)] = STATE_ID[name]

    own = [p for pu in tl.utterances if pu.speaker == "self" for p in pu.phonemes()]
    intervals = viseme_intervals(own)
    mouth = mouth_track(intervals, n)
    own_audio = render_audio(tl, "self")
    energy = frame_energy(own_audio, n)
    env = gaussian_filter1d(energy / (energy.max() + 1e-8), 2.0)
    voiced = np.zeros(n, np.int64)
    for p in own:
        if p.ipa:
            voiced[(t >= p.start) & (t < p.end)] = 1
    partner = np.zeros(n, np.int64)
    for pu in tl.utterances:
        if pu.speaker == "partner":
            partner[(t >= pu.start) & (t < pu.end)] = 1

    ctrl = {k: _smooth_keys(rng, n, *_CONTROL_RANGE[k], every=(1.0, 2.5)) for k in CONTROLS}
    # Occasional squint: one eye narrower than the other for a while.
    if rng.random() < 0.3:
        side = str(rng.choice(["eye_open_l", "eye_open_r"]))
        ctrl[side] = np.clip(ctrl[side] - 0.3 * _bumps(n, [float(rng.uniform(0, n / FPS))], 0.8), 0.4, 1.25)

    bias = {k: np.zeros(n) for k in CONTROLS}
    for k in CONTROLS:
        for sname, sid in STATE_ID.items():
            bias[k][state == sid] = _STATE_BIAS[sname].get(k, 0.0)
        bias[k] = gaussian_filter1d(bias[k], 0.25 * FPS)
    speaking = gaussian_filter1d((state == STATE_ID["speak"]).astype(float), 0.2 * FPS)
    listening = (state == STATE_ID["listen"]).astype(float)
    idle = gaussian_filter1d((state == STATE_ID["idle"]).astype(float), 0.3 * FPS)

    # Speak: head follows speech energy (nods on loud syllables, small turns); brows rise on
    # stressed syllables, estimated as long and loud vowels.
    pitch_b = speaking * 4.0 * (env - gaussian_filter1d(env, 12.0))
    yaw_b = speaking * 3.0 * env * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6.3))
    vowels = [iv for iv in intervals if iv.viseme in VOWEL_VISEMES]
    brow_b = np.zeros(n)
    if vowels:
        durs = np.array([iv.end - iv.start for iv in vowels])
        med = float(np.median(durs))
        stressed = []
        for iv, d in zip(vowels, durs):
            k = min(n - 1, int((iv.start + iv.end) / 2 * FPS))
            if d > 1.25 * med and env[k] > 0.5:
                stressed.append((iv.start + iv.end) / 2)
        brow_b = 0.35 * _bumps(n, stressed, 0.12)
    # Listen: nods every 1.5-3.5 s while the partner talks or pauses.
    nods = []
    for _, a, b in [s for s in tl.segments if s[0] == "listen"]:
        c = a + float(rng.uniform(0.3, 1.2))
        while c < b - 0.3:
            nods.append(c)
            c += float(rng.uniform(1.5, 3.5))
    pitch_b = pitch_b + 5.0 * _bumps(n, nods, 0.18) * (listening > 0)
    # Idle: slow breathing sway and occasional glances away.
    breath = np.sin(2 * np.pi * float(rng.uniform(0.2, 0.3)) * t + rng.uniform(0, 6.3))
    pitch_b = pitch_b + 0.8 * breath * idle
    gaze_x = np.zeros(n)
    gaze_y = np.zeros(n)
    for _, a, b in [s for s in tl.segments if s[0] == "idle"]:
        c = a + float(rng.uniform(0.2, 1.5))
        while c < b - 0.4:
            hold = float(rng.uniform(0.5, 1.5))
            on = np.clip((t - c) / 0.12, 0, 1) * np.clip((c + hold - t) / 0.12, 0, 1)
            gaze_x += on * rng.uniform(-1, 1)
            gaze_y += on * rng.uniform(-0.6, 0.4)
            c += hold + float(rng.uniform(1.5, 4.0))
    gaze_x += 0.08 * np.sin(2 * np.pi * 0.13 * t + rng.uniform(0, 6.3))

    out: dict[str, np.ndarray] = {
        "state": state,
        "viseme": mouth.viseme,
        "mouth_open": mouth.open,
        "mouth_width": mouth.width,
        "mouth_round": mouth.round,
        "voice": voiced,
        "partner_voice": partner,
        "energy": energy,
        "blink": blink_curve(rng, n, blink_per_minute),
        "gaze_x": np.clip(gaze_x, -1, 1),
        "gaze_y": np.clip(gaze_y, -1, 1),
        "breath": breath * (0.4 + 0.6 * idle),
    }
    behaviour = {"brow_raise": brow_b, "yaw": yaw_b, "pitch": pitch_b}
    for k in CONTROLS:
        out[f"ctrl_{k}"] = ctrl[k]
        lo, hi = _CONTROL_RANGE[k][2:]
        out[k] = np.clip(ctrl[k] + bias[k] + behaviour.get(k, 0.0), lo, hi)
    return out

