"""IPA phoneme -> viseme table and the mouth trajectory that follows it.

Units (also in docs/DATA.md): `open` is the inner-lip gap as a fraction of the inter-ocular
distance (IOD); `width` is a relative change of the lip-corner distance; `round` in [0, 1]
is lip protrusion/rounding (narrows the mouth). The synthetic renderer draws exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from rtavatar import FPS
from rtavatar.tts import Phoneme


@dataclass(frozen=True)
class VisemeShape:
    open: float
    width: float
    round: float


# Index order is the on-disk id of each viseme (docs/DATA.md) - append only.
VISEMES: dict[str, VisemeShape] = {
    "sil": VisemeShape(0.00, 0.00, 0.0),  # silence / pause: lips closed, relaxed
    "PP": VisemeShape(0.00, -0.03, 0.1),  # p b m: lips pressed together
    "FF": VisemeShape(0.05, 0.00, 0.0),  # f v: lower lip to upper teeth
    "TH": VisemeShape(0.12, 0.02, 0.0),  # θ ð: tongue between teeth
    "DD": VisemeShape(0.13, 0.04, 0.0),  # t d n l ɾ: tongue tip on ridge
    "KK": VisemeShape(0.17, 0.02, 0.0),  # k g ŋ h x: back of tongue
    "CH": VisemeShape(0.10, -0.12, 0.55),  # ʃ ʒ tʃ dʒ: protruded lips
    "SS": VisemeShape(0.06, 0.10, 0.0),  # s z: teeth close, lips spread
    "RR": VisemeShape(0.11, -0.08, 0.45),  # ɹ r ɻ: slight rounding
    "AA": VisemeShape(0.48, 0.04, 0.0),  # ɑ a æ ʌ ɐ ɒ: open jaw
    "EH": VisemeShape(0.30, 0.10, 0.0),  # ɛ e ə ɜ ɚ: mid open, spread
    "IH": VisemeShape(0.16, 0.18, 0.0),  # ɪ i j: narrow, spread
    "OH": VisemeShape(0.34, -0.12, 0.65),  # ɔ o ɵ: rounded open
    "UW": VisemeShape(0.12, -0.20, 0.95),  # ʊ u ʉ w: tight rounding
}
VISEME_NAMES: tuple[str, ...] = tuple(VISEMES)
VISEME_ID = {name: i for i, name in enumerate(VISEME_NAMES)}

# First IPA symbol -> viseme. Longest prefix wins (so "tʃ" beats "t").
IPA_TO_VISEME: dict[str, str] = {
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "θ": "TH", "ð": "TH",
    "t": "DD", "d": "DD", "n": "DD", "l": "DD", "ɾ": "DD", "ɫ": "DD", "ʔ": "DD",
    "k": "KK", "g": "KK", "ɡ": "KK", "ŋ": "KK", "h": "KK", "x": "KK",
    "ʃ": "CH", "ʒ": "CH", "tʃ": "CH", "dʒ": "CH",
    "s": "SS", "z": "SS",
    "ɹ": "RR", "r": "RR", "ɻ": "RR",
    "ɑ": "AA", "a": "AA", "æ": "AA", "ʌ": "AA", "ɐ": "AA", "ɒ": "AA",
    "ɛ": "EH", "e": "EH", "ə": "EH", "ɜ": "EH", "ɚ": "EH",
    "ɪ": "IH", "i": "IH", "j": "IH", "ᵻ": "IH",
    "ɔ": "OH", "o": "OH", "ɵ": "OH",
    "ʊ": "UW", "u": "UW", "ʉ": "UW", "w": "UW",
}
VOWEL_VISEMES = frozenset({"AA", "EH", "IH", "OH", "UW"})
_IGNORED = "ˈˌːˑ̩̃ʲʰ"  # stress, length and diacritic marks do not change the mouth shape


def _segments_of(ipa: str) -> list[str]:
    """Visemes of one espeak phoneme name, in order (a diphthong like "aɪ" gives two)."""
    name = "".join(ch for ch in ipa if ch not in _IGNORED)
    out: list[str] = []
    i = 0
    while i < len(name):
        for size in (2, 1):
            vis = IPA_TO_VISEME.get(name[i : i + size])
            if vis is not None:
                out.append(vis)
                i += size
                break
        else:
            i += 1  # unknown symbol: skip
    # Consonant clusters named as one phoneme keep only their first shape; vowels keep glides.
    if out and out[0] not in VOWEL_VISEMES:
        out = out[:1]
    return out or ["sil"]


@dataclass(frozen=True)
class VisemeInterval:
    viseme: str
    start: float
    end: float


def viseme_intervals(phonemes: list[Phoneme]) -> list[VisemeInterval]:
    """Split phonemes into viseme intervals; diphthongs spend 60% on their first vowel."""
    out: list[VisemeInterval] = []
    for ph in phonemes:
        segs = _segments_of(ph.ipa) if ph.ipa else ["sil"]
        if len(segs) == 1:
            out.append(VisemeInterval(segs[0], ph.start, ph.end))
            continue
        cut = ph.start + 0.6 * (ph.end - ph.start)
        bounds = [ph.start, cut] + list(np.linspace(cut, ph.end, len(segs))[1:])
        out.extend(VisemeInterval(v, a, b) for v, a, b in zip(segs, bounds[:-1], bounds[1:]))
    return out


@dataclass
class MouthTrack:
    """Per-frame mouth ground truth."""

    viseme: np.ndarray  # int (index into VISEME_NAMES)
    open: np.ndarray
    width: np.ndarray
    round: np.ndarray


# Coarticulation: targets on a 200 Hz grid are smoothed with a Gaussian (sigma 22 ms), which
# anticipates the next shape a little and never lets the mouth snap. Pressed-lip consonants
# (PP) keep a tighter kernel so closures are reached, as in real speech.
_GRID_HZ = 200
_SIGMA_S = 0.022


def mouth_track(intervals: list[VisemeInterval], n_frames: int, fps: int = FPS) -> MouthTrack:
    """Sample the smoothed viseme trajectory at frame centres ((i + 0.5) / fps)."""
    n_grid = int(np.ceil(n_frames / fps * _GRID_HZ)) + 1
    t_grid = np.arange(n_grid) / _GRID_HZ
    ids = np.zeros(n_grid, np.int64)  # 0 = "sil"
    for iv in intervals:
        a, b = np.searchsorted(t_grid, [iv.start, iv.end])
        ids[a:b] = VISEME_ID[iv.viseme]
    table = np.array([[v.open, v.width, v.round] for v in VISEMES.values()], np.float64)
    targets = table[ids]
    smooth = gaussian_filter1d(targets, _SIGMA_S * _GRID_HZ, axis=0, mode="nearest")
    # Lip closures: where the target is pressed lips, pull the opening down to the target.
    closed = (ids == VISEME_ID["PP"]).astype(np.float64)
    closed = gaussian_filter1d(closed, 0.4 * _SIGMA_S * _GRID_HZ, mode="nearest")
    smooth[:, 0] *= 1.0 - 0.85 * np.clip(closed * 1.6, 0.0, 1.0)
    t_frames = (np.arange(n_frames) + 0.5) / fps
    idx = np.clip(np.round(t_frames * _GRID_HZ).astype(np.int64), 0, n_grid - 1)
    vals = smooth[idx]
    return MouthTrack(viseme=ids[idx], open=np.clip(vals[:, 0], 0, None), width=vals[:, 1], round=np.clip(vals[:, 2], 0, 1))
