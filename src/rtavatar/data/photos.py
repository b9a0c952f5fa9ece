"""Photo identities for `synth-data --portraits DIR`: real photos animated by landmark warping.

Each photo clip takes one photo (or a morph of two), aligns it in the training framing at
twice the clip resolution, varies it (mirror, framing jitter, colour and lighting), and
animates it with `photo.animator.PhotoAnimator` along the same behaviour timeline as a procedural
face. Who is held out: every photo under a folder named in `holdout` (default `cc0`: the
loose webcam / phone photos) and about `holdout_pct` % of the other people, chosen by a hash
of the person (`person_of`: the leading number of the file name in its top folder, as
`london/neutral/001_03.jpg` and `london/smiling/001_08.jpg` are both `london/001`; else the
folder), so every photo of one person falls on the same side.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from rtavatar.photo.animator import PhotoAnimator
from rtavatar.photo.geometry import border_points, tps_backward_map, warp_image
from rtavatar.errors import RTAvatarError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# iBUG 68-point index of each point's mirror image (left <-> right).
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


@dataclass(frozen=True)
class PhotoEntry:
    path: Path
    rel: str  # path relative to the portraits folder (identity names, credits)
    person: str
    split: str


def person_of(rel: str) -> str:
    """A file name's leading number of 3+ digits within its top folder, else its folder."""
    p = Path(rel)
    m = re.match(r"\d{3,}", p.stem)
    if m:
        return f"{p.parts[0]}/{m.group(0)}" if len(p.parts) > 1 else m.group(0)
    return p.parent.as_posix() if len(p.parts) > 1 else p.stem


def scan_portraits(root: str | Path, holdout: tuple[str, ...] = ("cc0",), holdout_pct: float = 12.0) -> list[PhotoEntry]:
    """Every image under `root` with its person and split (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise RTAvatarError(f"synth-data: --portraits {root} is not a directory")
    out = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        person = person_of(rel)
        held = any(rel.split("/")[0] == h or rel.startswith(h.rstrip("/") + "/") for h in holdout if h)
        held = held or (zlib.crc32(person.encode()) % 10_000) < holdout_pct * 100
        out.append(PhotoEntry(path, rel, person, "test" if held else "train"))
    if not out:
        raise RTAvatarError(f"synth-data: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return out


@lru_cache(maxsize=512)
def _detect(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The photo and its 68 landmarks (largest face), or None when dlib finds no face."""
    from rtavatar.photo.align import shared_analyzer

    image = np.asarray(Image.open(path).convert("RGB"))
    fa = shared_analyzer()
    faces = fa.detect(image)
    if not faces:
        return None
    return image, fa.landmarks(image, faces[0].box).astype(np.float64)


def aligned(entry: PhotoEntry, side_px: int, rng: np.random.Generator | None = None,
            jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop (side_px, side_px, 3) uint8 and its landmarks in crop pixels."""
    from rtavatar.photo.align import crop_frame, face_crop_box

    found = _detect(str(entry.path))
    if found is None:
        raise RTAvatarError(f"{entry.rel}: no face found")
    image, pts = found
    cx, cy, side = face_crop_box(pts[None])[0]
    if rng is not None and jitter > 0:
        side *= float(rng.uniform(1 - jitter, 1 + jitter))
        cx += float(rng.uniform(-jitter, jitter)) * side
        cy += float(rng.uniform(-jitter, jitter)) * side
    s = max(int(round(side)), 8)
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    crop = crop_frame(image, x0 + s / 2, y0 + s / 2, s, side_px)
    return crop, (pts - [x0, y0]) * (side_px / s)


def mirror(crop: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    side = crop.shape[1]
    flipped = pts[MIRROR].copy()
    flipped[:, 0] = side - 1 - flipped[:, 0]
    return np.ascontiguousarray(crop[:, ::-1]), flipped


def morph(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """A new face between two aligned photos: both warped to the blended shape, then mixed."""
    (ia, pa), (ib, pb) = a, b
    side = ia.shape[0]
    target = (1 - alpha) * pa + alpha * pb
    border = border_points(side)
    wa = warp_image(ia, tps_backward_map(np.concatenate([target, border]), np.concatenate([pa, border]), side))
    wb = warp_image(ib, tps_backward_map(np.concatenate([target, border]), np.concatenate([pb, border]), side))
    return np.clip((1 - alpha) * wa + alpha * wb + 0.5, 0, 255).astype(np.uint8), target


def relight(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour and lighting variation: channel gains, gamma, a soft light gradient."""
    x = crop.astype(np.float32) / 255.0
    gains = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    gamma = float(rng.uniform(0.8, 1.25))
    side = crop.shape[0]
    ang = rng.uniform(0, 2 * np.pi)
    u = (np.arange(side, dtype=np.float32) / side - 0.5)
    ramp = 1 + float(rng.uniform(0, 0.25)) * (np.cos(ang) * u[None, :] + np.sin(ang) * u[:, None])
    x = np.clip(x ** gamma * gains * ramp[..., None], 0, 1)
    return (x * 255 + 0.5).astype(np.uint8)


def degrade(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A webcam's look: under-exposed (x0.35-0.75), soft (resampled through 35-70 % of the
    size) and noisy (sensor noise, std 1-4 % of white). The shared faces are studio portraits;
    webcam photos are darker, softer and noisier than any of them."""
    side = crop.shape[0]
    small = max(8, int(round(side * float(rng.uniform(0.35, 0.7)))))
    soft = Image.fromarray(crop).resize((small, small), Image.BILINEAR).resize((side, side), Image.BILINEAR)
    x = np.asarray(soft, np.float32) / 255.0 * float(rng.uniform(0.35, 0.75))
    x = x + rng.normal(0.0, float(rng.uniform(0.01, 0.04)), x.shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass
class PhotoIdentity:
    """What one photo clip animates, and where it came from."""

    name: str
    sources: list[str]
    split: str
    animator: PhotoAnimator


def sample_photo_identity(entries: list[PhotoEntry], rng: np.random.Generator, split: str, resolution: int,
                          p_mirror: float = 0.5, p_morph: float = 0.25, jitter: float = 0.04,
                          p_degrade: float = 0.0) -> PhotoIdentity:
    """A varied photo identity of `split` (see the module docstring)."""
    pool = [e for e in entries if e.split == split] or entries
    for _ in range(20):  # skip photos dlib finds no face in
        picks = [pool[int(rng.integers(len(pool)))]]
        if rng.random() < p_morph and len({e.person for e in pool}) > 1:
            other = [e for e in pool if e.person != picks[0].person]
            picks.append(other[int(rng.integers(len(other)))])
        if all(_detect(str(e.path)) is not None for e in picks):
            break
    else:
        raise RTAvatarError("synth-data: dlib finds no face in the portraits it tried")
    side = 2 * resolution
    faces = [aligned(e, side, rng, jitter) for e in picks]
    if len(faces) == 2:
        alpha = float(rng.uniform(0.3, 0.7))
        crop, pts = morph(faces[0], faces[1], alpha)
        name = f"morph:{picks[0].rel}+{picks[1].rel}@{alpha:.2f}"
    else:
        (crop, pts), name = faces[0], f"photo:{picks[0].rel}"
    if rng.random() < p_mirror:
        crop, pts = mirror(crop, pts)
        name += ":mirror"
    crop = relight(crop, rng)
    if p_degrade > 0 and rng.random() < p_degrade:  # no draw at 0: older datasets stay reproducible
        crop = degrade(crop, rng)
        name += ":webcam"
    tint = tuple(float(v) for v in rng.uniform(0.85, 1.1, 3))
    return PhotoIdentity(name, [e.rel for e in picks], split, PhotoAnimator(crop, pts, resolution, tint))


def read_gaps(frames: np.ndarray, side: int = 256) -> np.ndarray:
    """dlib's inner-lip gap (IOD) of each frame, read at `side` px (NaN where no face is found)."""
    from rtavatar.photo.align import shared_analyzer
    from rtavatar.photo.landmarks import raw_features

    fa = shared_analyzer()
    gaps = np.full(len(frames), np.nan)
    for i, f in enumerate(frames):
        big = np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC))
        faces = fa.detect(big)
        if faces:
            gaps[i] = raw_features(fa.landmarks(big, faces[0].box))[2]
    return gaps


def check_photo_clips(data: str | Path, max_clips: int = 0) -> list[dict]:
    """Per photo clip that speaks: dlib's detection rate and the Pearson r between the gap it
    reads on the rendered frames and the written `mouth_open` (docs/DATA.md#photo-clips)."""
    from rtavatar.data.dataset import Dataset

    ds = Dataset(data)
    out = []
    for i in range(len(ds)):
        meta = ds.meta(i)
        if meta.get("source") != "photo" or np.std(meta["frames"]["mouth_open"]) < 0.02:
            continue
        clip = ds.load(i)
        gaps = read_gaps(clip.frames)
        ok = np.isfinite(gaps)
        truth = clip.columns["mouth_open"]
        r = float(np.corrcoef(gaps[ok], truth[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        out.append({"clip": meta["clip_id"], "identity": meta["identity"], "detect": float(ok.mean()), "r": r})
        if max_clips and len(out) >= max_clips:
            break
    return out
