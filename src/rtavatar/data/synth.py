"""`rtavatar synth-data`: write a synthetic talking-face dataset in the format of docs/DATA.md.

Each clip is generated from its own seed (derived from the dataset seed and the clip index),
so clips can be made in any order, in parallel, and an interrupted run resumes by skipping
clips whose meta.json (written last, atomically) already exists.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
from tqdm import tqdm

from rtavatar import FPS, SAMPLE_RATE
from rtavatar.config import to_dict
from rtavatar.data.behavior import CONTROLS, STATES, Timeline, frame_signals, identity_voice, make_timeline, render_audio
from rtavatar.data.face import FaceState, Renderer, sample_identity
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

    def validate(self) -> "SynthConfig":
        """A clear error for settings no clip could be made with (raised before anything is written)."""
        from rtavatar.errors import RTAvatarError

        lo, hi = self.seconds
        checks = [(self.clips >= 1, f"clips must be >= 1, got {self.clips}"),
                  (32 <= self.resolution <= 2048, f"resolution must be in [32, 2048], got {self.resolution}"),
                  (self.identities >= 0, f"identities must be >= 0, got {self.identities}"),
                  (0.0 <= self.test_fraction <= 1.0, f"test_fraction must be in [0, 1], got {self.test_fraction}"),
                  (0.5 <= lo <= hi <= 600, f"seconds must satisfy 0.5 <= LO <= HI <= 600, got {self.seconds}"),
                  (self.workers >= 0, f"workers must be >= 0, got {self.workers}")]
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


def clip_meta(clip_id: str, identity_seed: int, split: str, tl: Timeline, sig: dict[str, np.ndarray], has_partner: bool) -> dict[str, Any]:
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
    return {
        "format_version": FORMAT_VERSION, "clip_id": clip_id, "source": "synthetic",
        "identity": f"synth-{identity_seed}", "split": split, "fps": FPS, "sample_rate": SAMPLE_RATE,
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
    ident_seed = identity_of_clip(cfg, index)
    split = split_of_identity(ident_seed, cfg.test_fraction)
    rng = np.random.default_rng(derive_seed(cfg.seed, "clip", index))
    tl = make_timeline(rng, cfg.seconds, identity_voice(ident_seed), split)
    sig = frame_signals(tl, rng, cfg.blink_per_minute)
    own, partner = render_audio(tl, "self"), render_audio(tl, "partner")
    has_partner = bool(np.any(partner))
    clip_dir.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(sample_identity(ident_seed), cfg.resolution)
    write_video(clip_dir / "video.mp4", render_frames(renderer, sig), own, fps=FPS, crf=cfg.crf, pix_fmt=cfg.pix_fmt)
    for name, track in (("audio.wav", own), ("partner.wav", partner if has_partner else None)):
        if track is not None:
            with atomic_write(clip_dir / name) as f:
                sf.write(f, track, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    meta = clip_meta(clip_id, ident_seed, split, tl, sig, has_partner)
    with atomic_write(meta_path, "w") as f:  # written last: its presence marks the clip complete
        json.dump(meta, f, separators=(",", ":"), sort_keys=True)
    return manifest_record(meta, cfg.resolution)


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
