"""Speech augmentation: the rooms, microphones and lines real voices arrive through.

Each call draws one chain: gain, then (each with its own chance) reverberation from a
synthetic room response, a band limit (telephone, a cheap headset or a laptop microphone),
and additive noise (white, pink or brown) at a random SNR. Durations never change, so frame
alignment with the video is kept.

`speed_perturb` is the other kind: the clip played k times faster (Kaldi's speed perturbation),
its pitch and formants scaled by k as a shorter or longer vocal tract would, and a per-frame
track (the mouth's landmarks) resampled in time with it, so one speaker's recordings sound
like several speakers talking at several rates. `pitch_shift` keeps the rate: the voice's pitch
and formants move by a number of semitones (a phase-vocoder stretch, then a resample back), so
one speaker's recordings sound like higher and lower voices saying the same words at the same
moments, and the mouth's track needs no change. `change_voice` moves the two apart, as they
differ between people: formants by a ratio, the pitch to a new median (Praat's "Change gender").
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, istft, resample_poly, sosfilt, stft

from rtavatar import SAMPLE_RATE, SAMPLES_PER_FRAME

BANDS = ((300.0, 3400.0), (150.0, 5000.0), (80.0, 7000.0))  # telephone, headset, laptop (Hz)


def room_response(rng: np.random.Generator, rt60: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Exponentially decaying noise: a diffuse room's impulse response with the direct path first."""
    n = max(int(rt60 * sr), 16)
    h = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)  # -60 dB at rt60
    h[0] = 0.0
    h *= 0.6 / max(float(np.sqrt((h**2).sum())), 1e-9)
    h[0] = 1.0
    return h


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / max(float(np.sqrt((x**2).mean())), 1e-9)


def _limit_peak(x: np.ndarray) -> np.ndarray:
    """`x` as float32, scaled down to a 0.99 peak if it goes past it."""
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x / peak * 0.99 if peak > 0.99 else x).astype(np.float32)


def _resample_to(x: np.ndarray, up: int, down: int, length: int) -> np.ndarray:
    """`x` resampled by up / down (reduced), then cut or zero-padded to `length` samples."""
    g = np.gcd(up, down)
    y = resample_poly(x, up // g, down // g)
    return np.pad(y, (0, max(0, length - len(y))))[:length]


def augment_speech(wav: np.ndarray, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One random degradation of 16 kHz mono speech (same length, float32)."""
    x = np.asarray(wav, np.float64)
    if rng.random() < 0.5:
        x = fftconvolve(x, room_response(rng, float(rng.uniform(0.15, 0.8)), sr))[: len(x)]
    if rng.random() < 0.5:
        lo, hi = BANDS[int(rng.integers(len(BANDS)))]
        x = sosfilt(butter(4, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos"), x)
    rms = float(np.sqrt((x**2).mean()))
    if rng.random() < 0.7 and rms > 1e-6:
        snr_db = float(rng.uniform(5.0, 30.0))
        x = x + coloured_noise(rng, len(x), float(rng.choice([0.0, 1.0, 2.0]))) * rms / 10 ** (snr_db / 20)
    x *= 10 ** (float(rng.uniform(-12.0, 6.0)) / 20)
    return _limit_peak(x)


def speed_perturb(wav: np.ndarray, track: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(samples,) 16 kHz audio and its (N, ...) per-frame track (N = samples / 640) played
    `factor` times faster: (N' x 640 samples, (N', ...)) with N' = round(N / factor), the track
    linearly interpolated at the new frames' times (NaN frames stay NaN where they are used)."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor {factor} is outside [0.5, 2]")
    track = np.asarray(track)
    n = len(track)
    m = max(1, int(round(n / factor)))
    x = _resample_to(np.asarray(wav, np.float64), int(round(1000 / factor)), 1000, m * SAMPLES_PER_FRAME)
    t = np.clip((np.arange(m) + 0.5) * factor - 0.5, 0, n - 1)  # frame centres, in the original's frames
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (t - lo).reshape(-1, *([1] * (track.ndim - 1)))
    out = track[lo] * (1 - w) + track[hi] * w
    return x.astype(np.float32), out.astype(track.dtype)


def _stretch(x: np.ndarray, rate: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """`x` played `rate` times longer at the same pitch (a phase vocoder)."""
    _, _, spec = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary="even", padded=True)
    steps = np.arange(0, spec.shape[1] - 1, 1.0 / rate)
    expected = 2 * np.pi * hop * np.arange(spec.shape[0]) / n_fft  # each bin's phase advance per hop
    spec = np.pad(spec, ((0, 0), (0, 2)))
    phase = np.angle(spec[:, 0])
    out = np.empty((spec.shape[0], len(steps)), np.complex128)
    for j, t in enumerate(steps):
        i, frac = int(t), t - int(t)
        a, b = spec[:, i], spec[:, i + 1]
        out[:, j] = ((1 - frac) * np.abs(a) + frac * np.abs(b)) * np.exp(1j * phase)
        d = np.angle(b) - np.angle(a) - expected
        phase = phase + expected + d - 2 * np.pi * np.round(d / (2 * np.pi))
    _, y = istft(out, nperseg=n_fft, noverlap=n_fft - hop, boundary=True)
    return y


def change_voice(wav: np.ndarray, formant: float, pitch: float = 0.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """16 kHz audio as another voice saying the same at the same moments: the formants scaled
    by `formant` (a shorter or longer vocal tract), the pitch's median moved to `pitch` Hz (0
    keeps it), by Praat's "Change gender" (pitch-synchronous overlap-add; `praat-parselmouth`,
    the `train` extra). Unlike `pitch_shift` the two move apart, as they do between people.
    The same length (float32); audio shorter than one 64 ms window comes back as it is."""
    x = np.asarray(wav, np.float64)
    if not 0.5 <= formant <= 2.0 or not (pitch == 0 or 50 <= pitch <= 500):
        raise ValueError(f"formant ratio {formant} (0.5-2) or pitch {pitch} Hz (0 or 50-500) out of range")
    if len(x) < 1024 or not np.abs(x).max() > 0:
        return x.astype(np.float32)
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError as e:
        raise ImportError("change_voice needs praat-parselmouth: pip install 'rtavatar[train]'") from e
    # Change gender: pitch floor and ceiling (Hz), formant shift ratio, new pitch median, pitch range factor, duration factor.
    y = call(parselmouth.Sound(x, sampling_frequency=sr), "Change gender", 75, 600, formant, pitch, 1.0, 1.0).values[0]
    return _limit_peak(np.pad(y, (0, max(len(x) - len(y), 0)))[: len(x)])


def pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    """16 kHz audio with its pitch and formants moved by `semitones` (within +-12), the same
    length and timing (float32); audio shorter than one 64 ms analysis window comes back as it is."""
    if abs(semitones) > 12:
        raise ValueError(f"pitch shift of {semitones} semitones is outside +-12")
    x = np.asarray(wav, np.float64)
    if semitones == 0 or len(x) < 1024:
        return x.astype(np.float32)
    rate = 2.0 ** (semitones / 12)
    # Stretched `rate` times longer, then played back `rate` times faster: the same length, pitch x rate.
    return _limit_peak(_resample_to(_stretch(x, rate), 1000, int(round(1000 * rate)), len(x)))
