"""`rtavatar synth-data`: write a synthetic talking-face dataset in the format of docs/DATA.md.

Each clip is generated from its own seed (derived from the dataset seed and the clip index),
so clips can be made in any order, in parallel, and an interrupted run resumes by skipping
clips whose meta.json (written last, atomically) already exists.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
from tqdm import tqdm

from rtavatar import FPS, SAMPLE_RATE
from rtavatar.config import to_dict
from rtavatar.data.behavior import CONTROLS, STATES, Timeline, frame_signals, identity_voice, make_timeline, render_audio
from rtavatar.data.face import FaceState, Renderer, sample_identity
from rtavatar.data.photos import PhotoEntry, sample_photo_identity, scan_portraits
from rtavatar.photo.animator import Pose
from rtavatar.data.visemes import VISEME_NAMES
from rtavatar.media import write_video
from rtavatar.utils import atomic_write, derive_seed, die_with_parent, remove_temp_debris

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Columns stored per frame in meta.json (docs/DATA.md); ints first, then floats.
INT_COLUMNS = ("state", "viseme", "voice", "partner_voice")
FLOAT_COLUMNS = (
    "mouth_open", "mouth_width", "mouth_round", "smile", "brow_raise", "eye_open_l", "eye_open_r",
    "blink", "gaze_x", "gaze_y", "yaw", "pitch", "roll", "breath", "energy",
) + tuple(f"ctrl_{k}" for k in CONTROLS)


@dataclass
class SynthConfig:
    """Settings of a synthetic dataset (saved as dataset.json beside the clips)."""

    clips: int = 100
    seed: int = 0
    resolution: int = 128
    seconds: tuple[float, float] = (4.0, 10.0)
    identities: int = 0  # 0: a new identity per clip; N: cycle through N identities
    test_fraction: float = 0.05  # identities held out (never in train clips), with held-out sentences
    blink_per_minute: float = 17.0
    crf: int = 10  # near-lossless H.264 ...
    pix_fmt: str = "yuv444p"  # ... without chroma subsampling (lip colour matters at 128 px)
    workers: int = 0  # 0: one per core
    # Photo identities (docs/DATA.md#photo-clips): a folder of face photos, the share of clips
    # that animate one, and how much of the behaviour's head motion photo clips keep.
    portraits: str = ""
    photo_fraction: float = 0.5
    photo_head_motion: float = 0.35
    photo_degrade: float = 0.0  # share of photo identities given a webcam's look (data/photos.degrade)
    holdout: tuple[str, ...] = ("cc0",)  # portrait sub-folders never trained on
    holdout_pct: float = 12.0  # ... and this share of the other people

    def validate(self) -> "SynthConfig":
        """A clear error for settings no clip could be made with (raised before anything is written)."""
        from rtavatar.errors import RTAvatarError

        lo, hi = self.seconds
        checks = [(self.clips >= 1, f"clips must be >= 1, got {self.clips}"),
                  (32 <= self.resolution <= 2048, f"resolution must be in [32, 2048], got {self.resolution}"),
                  (self.identities >= 0, f"identities must be >= 0, got {self.identities}"),
                  (0.0 <= self.test_fraction <= 1.0, f"test_fraction must be in [0, 1], got {self.test_fraction}"),
                  (0.5 <= lo <= hi <= 600, f"seconds must satisfy 0.5 <= LO <= HI <= 600, got {self.seconds}"),
                  (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
                  (0.0 <= self.photo_fraction <= 1.0, f"photo_fraction must be in [0, 1], got {self.photo_fraction}"),
                  (0.0 <= self.photo_head_motion <= 1.0, f"photo_head_motion must be in [0, 1], got {self.photo_head_motion}"),
                  (0.0 <= self.photo_degrade <= 1.0, f"photo_degrade must be in [0, 1], got {self.photo_degrade}"),
                  (0.0 <= self.holdout_pct <= 100.0, f"holdout_pct must be in [0, 100], got {self.holdout_pct}")]
        for ok, msg in checks:
            if not ok:
                raise RTAvatarError(f"synth-data: {msg}")
        return self


def identity_of_clip(cfg: SynthConfig, index: int) -> int:
    if cfg.identities > 0:
        return derive_seed(cfg.seed, "identity", index % cfg.identities)
    return derive_seed(cfg.seed, "identity", index)


def split_of_identity(identity_seed: int, test_fraction: float) -> str:
    return "test" if (identity_seed % 10_000) < test_fraction * 10_000 else "train"


def is_photo_clip(cfg: SynthConfig, index: int) -> bool:
    return bool(cfg.portraits) and derive_seed(cfg.seed, "kind", index) % 10_000 < cfg.photo_fraction * 10_000


def scale_head_motion(sig: dict[str, np.ndarray], scale: float) -> None:
    """Photo clips keep `scale` of the head pose (columns and controls alike), in place."""
    for k in ("yaw", "pitch", "roll", "breath"):
        sig[k] = sig[k] * scale
        if f"ctrl_{k}" in sig:
            sig[f"ctrl_{k}"] = sig[f"ctrl_{k}"] * scale


def pose_of(sig: dict[str, np.ndarray], i: int) -> Pose:
    return Pose(**{k: float(sig[k][i]) for k in Pose.__dataclass_fields__ if k in sig})  # mouth_shape: not a signal


def face_state(sig: dict[str, np.ndarray], i: int) -> FaceState:
    """The renderer's input for frame i of the per-frame signals."""
    return FaceState(
        mouth_open=float(sig["mouth_open"][i]), mouth_width=float(sig["mouth_width"][i]),
        mouth_round=float(sig["mouth_round"][i]), smile=float(sig["smile"][i]),
        brow_raise=float(sig["brow_raise"][i]), eye_open_l=float(sig["eye_open_l"][i]),
        eye_open_r=float(sig["eye_open_r"][i]), blink=float(sig["blink"][i]),
        gaze_x=float(sig["gaze_x"][i]), gaze_y=float(sig["gaze_y"][i]), yaw=float(sig["yaw"][i]),
        pitch=float(sig["pitch"][i]), roll=float(sig["roll"][i]), breath=float(sig["breath"][i]),
    )


def render_frames(renderer: Renderer, sig: dict[str, np.ndarray]) -> Iterator[np.ndarray]:
    for i in range(len(sig["state"])):
        yield renderer.render(face_state(sig, i))


def _round_list(a: np.ndarray, ndigits: int = 4) -> list:
    return [round(float(v), ndigits) + 0.0 for v in a]  # + 0.0 turns -0.0 into 0.0


def clip_meta(clip_id: str, identity: str, split: str, tl: Timeline, sig: dict[str, np.ndarray], has_partner: bool,
              source: str = "synthetic", portraits: list[str] | None = None) -> dict[str, Any]:
    """meta.json content: clip facts, the speech timeline and the per-frame columns."""
    utterances = [
        {
            "speaker": pu.speaker, "text": pu.utt.text, "voice": pu.utt.voice,
            "start": round(pu.start, 4), "end": round(pu.end, 4),
            "phonemes": [[p.ipa, round(p.start, 4), round(p.end, 4)] for p in pu.phonemes()],
        }
        for pu in tl.utterances
    ]
    frames: dict[str, list] = {k: [int(v) for v in sig[k]] for k in INT_COLUMNS}
    frames.update({k: _round_list(sig[k]) for k in FLOAT_COLUMNS})
    extra = {"portraits": portraits} if portraits else {}
    return {
        **extra, "format_version": FORMAT_VERSION, "clip_id": clip_id, "source": source,
        "identity": identity, "split": split, "fps": FPS, "sample_rate": SAMPLE_RATE,
        "n_frames": tl.n_frames, "duration": round(tl.n_frames / FPS, 4), "has_partner": has_partner,
        "voice": {"name": tl.voice.name, "rate": tl.voice.rate, "pitch": tl.voice.pitch, "range": tl.voice.range},
        "segments": [[s, round(a, 4), round(b, 4)] for s, a, b in tl.segments],
        "utterances": utterances, "frames": frames,
    }


def manifest_record(meta: dict[str, Any], resolution: int) -> dict[str, Any]:
    states = meta["frames"]["state"]
    return {
        "clip_id": meta["clip_id"], "path": f"clips/{meta['clip_id']}", "identity": meta["identity"],
        "split": meta["split"], "n_frames": meta["n_frames"], "duration": meta["duration"],
        "resolution": resolution, "has_partner": meta["has_partner"],
        "states": sorted({STATES[s] for s in states}),
    }


def generate_clip(cfg: SynthConfig, index: int, out_dir: Path) -> dict[str, Any]:
    """Make clip `index` (or reuse it if complete); returns its manifest record."""
    clip_id = f"{index:06d}"
    clip_dir = out_dir / "clips" / clip_id
    meta_path = clip_dir / "meta.json"
    if meta_path.exists():
        return manifest_record(json.loads(meta_path.read_text()), cfg.resolution)
    rng = np.random.default_rng(derive_seed(cfg.seed, "clip", index))
    if is_photo_clip(cfg, index):
        split = "test" if rng.random() < cfg.test_fraction else "train"
        photo = sample_photo_identity(_portraits(cfg), rng, split, cfg.resolution, p_degrade=cfg.photo_degrade)
        voice_seed = zlib.crc32(photo.name.split(":mirror")[0].encode())
        identity, source, sources = photo.name, "photo", photo.sources
    else:
        ident_seed = identity_of_clip(cfg, index)
        split = split_of_identity(ident_seed, cfg.test_fraction)
        voice_seed, identity, source, sources = ident_seed, f"synth-{ident_seed}", "synthetic", None
    tl = make_timeline(rng, cfg.seconds, identity_voice(voice_seed), split)
    sig = frame_signals(tl, rng, cfg.blink_per_minute)
    own, partner = render_audio(tl, "self"), render_audio(tl, "partner")
    has_partner = bool(np.any(partner))
    clip_dir.mkdir(parents=True, exist_ok=True)
    if source == "photo":
        scale_head_motion(sig, cfg.photo_head_motion)
        frames = (photo.animator.render(pose_of(sig, i)) for i in range(tl.n_frames))
    else:
        frames = render_frames(Renderer(sample_identity(ident_seed), cfg.resolution), sig)
    write_video(clip_dir / "video.mp4", frames, own, fps=FPS, crf=cfg.crf, pix_fmt=cfg.pix_fmt)
    for name, track in (("audio.wav", own), ("partner.wav", partner if has_partner else None)):
        if track is not None:
            with atomic_write(clip_dir / name) as f:
                sf.write(f, track, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    meta = clip_meta(clip_id, identity, split, tl, sig, has_partner, source, sources)
    with atomic_write(meta_path, "w") as f:  # written last: its presence marks the clip complete
        json.dump(meta, f, separators=(",", ":"), sort_keys=True)
    return manifest_record(meta, cfg.resolution)


@lru_cache(maxsize=4)
def _portrait_list(root: str, holdout: tuple[str, ...], pct: float) -> list[PhotoEntry]:
    return scan_portraits(root, holdout, pct)


def _portraits(cfg: SynthConfig) -> list[PhotoEntry]:
    return _portrait_list(cfg.portraits, tuple(cfg.holdout), cfg.holdout_pct)


def _worker(args: tuple[SynthConfig, int, str]) -> dict[str, Any]:
    cfg, index, out = args
    return generate_clip(cfg, index, Path(out))


def dataset_info(cfg: SynthConfig) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION, "source": "synthetic", "fps": FPS, "sample_rate": SAMPLE_RATE,
        "resolution": cfg.resolution, "states": list(STATES), "visemes": list(VISEME_NAMES),
        "controls": list(CONTROLS), "int_columns": list(INT_COLUMNS), "float_columns": list(FLOAT_COLUMNS),
        "generator": to_dict(cfg),
    }


def synthesize_dataset(cfg: SynthConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Generate (or complete) a dataset; returns a summary with throughput figures."""
    import os

    cfg.validate()  # before anything is written
    if cfg.portraits and cfg.photo_fraction > 0:
        _portraits(cfg)  # a missing or empty folder fails here, not in a worker
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_debris(out)
    info_path = out / "dataset.json"
    info = dataset_info(cfg)
    if info_path.exists():
        old = json.loads(info_path.read_text())
        same = {k: v for k, v in old.get("generator", {}).items() if k not in ("clips", "workers")}
        new = {k: v for k, v in info["generator"].items() if k not in ("clips", "workers")}
        if same != new:
            raise ValueError(f"{out} holds a dataset made with different settings; use a new --out directory")
    with atomic_write(info_path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    workers = cfg.workers or os.cpu_count() or 1
    jobs = [(cfg, i, str(out)) for i in range(cfg.clips)]
    t0 = time.perf_counter()
    if workers == 1:
        records = [_worker(j) for j in tqdm(jobs, desc="clips", disable=not progress)]
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            records = list(tqdm(pool.map(_worker, jobs, chunksize=1), total=len(jobs), desc="clips", disable=not progress))
    elapsed = time.perf_counter() - t0
    with atomic_write(out / "manifest.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    seconds = sum(r["duration"] for r in records)
    summary = {
        "clips": len(records), "footage_seconds": round(seconds, 2), "elapsed_seconds": round(elapsed, 2),
        "footage_per_wall_second": round(seconds / max(elapsed, 1e-9), 2), "workers": workers,
        "test_clips": sum(r["split"] == "test" for r in records),
    }
    log.info("wrote %d clips (%.1f s of footage) to %s in %.1f s", len(records), seconds, out, elapsed)
    return summary
