"""Per-video metrics beside Sync-C/D. Names say what they measure; none is a published metric.

- aperture correlation: Pearson r between the sync expert's per-frame mouth-opening estimate
  on the frames and the ground-truth `mouth_open` (synthetic data) of the same audio;
- mouth closure in silence: mean estimated opening (IOD) on frames at least 80 ms away from
  any voiced frame (lower is better; compare with the ground truth's own value);
- temporal jitter: mean absolute second difference of pixel values over time (0..255 units),
  i.e. frame-to-frame acceleration; stiff video scores low, flicker scores high;
- FD-sync: Fréchet distance between Gaussians fitted to the sync expert's video-window
  embeddings of real and of generated clips. It is *not* FID/FVD (different network, features
  and data), only comparable within this project.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def finite_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the positions where both are finite (NaN: no face read there), NaN
    with fewer than 3 of them or a constant series."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def finite_mean(values: list[float]) -> float:
    """Mean over the finite values (NaN if none: e.g. the correlation of a frozen video)."""
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def standard_error(values: list[float]) -> float:
    """Standard error of the mean over the finite values (NaN with fewer than two)."""
    v = [x for x in values if np.isfinite(x)]
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def silent_frames(voice: np.ndarray, margin: int = 2) -> np.ndarray:
    """Frames at least `margin` frames (80 ms at 25 fps) away from any voiced frame."""
    v = np.asarray(voice).astype(bool)
    near = np.convolve(v.astype(float), np.ones(2 * margin + 1), mode="same") > 0
    return ~near


def temporal_jitter(frames: np.ndarray) -> float:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over pixels and time (frames uint8, 0..255)."""
    if len(frames) < 3:
        return float("nan")
    x = frames.astype(np.float32)
    return float(np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
