"""`rtavatar prepare`: ordinary talking videos -> the training dataset format of docs/DATA.md.

Per video, two decoding passes keep memory flat for long 1080p files:

1. *analyse*: resample to 25 fps (nearest source frame), detect faces on every
   `detect_every`-th frame (landmark-box tracking between), 68 landmarks on the full frame,
   and a colour-histogram distance to the previous frame for scene cuts. Frames with no
   face, several faces or a too-small face are unusable; usable runs are cut at scene cuts,
   dropped when shorter than `min_seconds` and split when longer than `max_seconds`.
   Every dropped span is reported with its reason.
2. *crop*: per kept segment, a square crop that frames the face like the synthetic data
   (eye line at `eye_y` of the crop, face scale from inter-ocular and eye-mouth distances),
   smoothed over time with a Gaussian of `smooth_seconds` so it does not jitter; frames
   are resized to `resolution` and written with the segment's audio and per-frame metadata
   (landmark-derived controls, VAD states).

Resumable: a video's report (videos/<id>.json) is written after its clips, and a rerun with
`--resume` skips videos that have one. dataset.json and manifest.jsonl are rebuilt from all
reports at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
from scipy.ndimage import gaussian_filter1d
from tqdm import tqdm

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.config import to_dict
from rtavatar.models.conditioning import CONTROLS, STATE_ID, STATES
from rtavatar.data.landmarks import (EYE_MOUTH_FRAC, EYE_Y, IOD_FRAC, FaceAnalyzer, controls_from_features, crop_frame,  # noqa: F401
                                     face_crop_box, landmark_box,
                                     raw_features)
from rtavatar.errors import DatasetError, MediaError
from rtavatar.media import iter_video_frames, read_audio, read_video_audio, write_video
from rtavatar.utils import atomic_write, die_with_parent, remove_temp_debris

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
OK, NO_FACE, SEVERAL, SMALL = 0, 1, 2, 3
REASONS = {NO_FACE: "no face", SEVERAL: "several faces", SMALL: "face too small"}
INT_COLUMNS = ("state", "voice", "partner_voice")
FLOAT_COLUMNS = ("mouth_open", "mouth_width", "smile", "brow_raise", "eye_open_l", "eye_open_r", "yaw", "pitch",
                 "roll", "energy", *(f"ctrl_{k}" for k in CONTROLS))


@dataclass
class PrepareConfig:
    resolution: int = 512
    detect_every: int = 1  # run the detector every n-th frame; track by landmarks between
    detect_side: int = 480  # detection runs on a copy with this longest side
    max_missed: int = 5  # frames: detector misses bridged by tracking; shorter 'several faces' runs ignored
    min_face: int = 64  # px: detector box side in the source video
    second_face: float = 0.5  # another face at least this fraction of the largest's size counts
    min_seconds: float = 2.0
    max_seconds: float = 20.0
    cut_threshold: float = 0.6  # L1 distance of consecutive frames' colour histograms (0..2)
    smooth_seconds: float = 0.5  # sigma of the crop path's Gaussian smoothing
    control_seconds: float = 1.0  # sigma of the smoothing that makes ctrl_* from measured controls
    # Framing of the synthetic data (measured with the same landmarks on neutral renders):
    eye_y: float = EYE_Y  # eye line, fraction of the crop from the top
    iod_frac: float = IOD_FRAC  # inter-ocular distance / crop side
    eye_mouth_frac: float = EYE_MOUTH_FRAC  # eye midpoint to mouth centre / crop side
    vad_threshold: float = 0.5
    test_fraction: float = 0.0  # fraction of videos (by id hash) in the test split
    crf: int = 18


# --------------------------------------------------------------------------- per video


def video_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", rel.rsplit(".", 1)[0]).strip("-")[:48] or "video"
    return f"{slug}-{hashlib.sha1(rel.encode()).hexdigest()[:6]}"


def resample_frames(frames: Iterator[tuple[float, np.ndarray]], fps: int = FPS) -> Iterator[np.ndarray]:
    """Constant-rate frames from timed frames: output k shows the source frame nearest to k/fps
    (the earlier one on a tie); the last source frame lasts as long as the gap before it."""
    prev: tuple[float, np.ndarray] | None = None
    gap, k, eps = 1.0 / fps, 0, 1e-9
    for t, f in frames:
        if prev is not None:
            gap = max(t - prev[0], 1e-6)
            while k / fps <= (prev[0] + t) / 2 + eps:
                yield prev[1]
                k += 1
        prev = (t, f)
    if prev is not None:
        while k / fps < prev[0] + gap - eps:
            yield prev[1]
            k += 1


def _histogram(frame: np.ndarray) -> np.ndarray:
    small = frame[:: max(1, frame.shape[0] // 64), :: max(1, frame.shape[1] // 64)]
    q = (small // 32).reshape(-1, 3).astype(np.int64)
    h = np.bincount(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], minlength=512).astype(np.float64)
    return h / h.sum()


@dataclass
class Analysis:
    status: np.ndarray  # (N,) OK / NO_FACE / SEVERAL / SMALL
    points: np.ndarray  # (N, 68, 2) landmarks in source pixels (NaN where no face)
    cut: np.ndarray  # (N,) True where frame k starts a new shot
    size: tuple[int, int]  # source width, height


def analyse(path: Path, cfg: PrepareConfig, fa: FaceAnalyzer) -> Analysis:
    status, points, cut = [], [], []
    prev_hist, prev_pts, prev_status, w, h, missed = None, None, NO_FACE, 0, 0, 0
    for k, frame in enumerate(resample_frames(iter_video_frames(path, with_times=True))):
        h, w = frame.shape[:2]
        hist = _histogram(frame)
        is_cut = prev_hist is not None and float(np.abs(hist - prev_hist).sum()) > cfg.cut_threshold
        prev_hist = hist
        if k % cfg.detect_every == 0 or is_cut or prev_pts is None:
            faces = fa.detect(frame)
            big = [f for f in faces if f.size >= cfg.second_face * faces[0].size]
            st = NO_FACE if not faces else SEVERAL if len(big) > 1 else SMALL if faces[0].size < cfg.min_face else OK
            box = faces[0].box if faces else None
            missed = missed + 1 if st == NO_FACE else 0
            if st == NO_FACE and prev_pts is not None and not is_cut and missed <= cfg.max_missed:
                st, box = OK, landmark_box(prev_pts)  # a detector dropout (blur, a blink): keep tracking
        else:  # track: the last landmarks' box, same face count as at the last detection
            st, box = prev_status, landmark_box(prev_pts)
        pts = fa.landmarks(frame, box) if box is not None and st != NO_FACE else np.full((68, 2), np.nan, np.float32)
        prev_pts, prev_status = (pts if st == OK else None), st
        status.append(st)
        points.append(pts)
        cut.append(is_cut)
    if not status:
        raise DatasetError(f"{path}: no decodable video frames")
    return Analysis(_drop_brief(np.array(status), SEVERAL, cfg.max_missed), np.stack(points), np.array(cut), (w, h))


def _drop_brief(status: np.ndarray, code: int, max_len: int) -> np.ndarray:
    """Runs of `code` up to max_len frames become OK: HOG fires on hair or shoulders for a
    frame or two, while a real second person stays in the picture. The largest face's
    landmarks were computed for those frames too."""
    status = status.copy()
    k = 0
    while k < len(status):
        j = k
        while j < len(status) and status[j] == status[k]:
            j += 1
        if status[k] == code and j - k <= max_len:
            status[k:j] = OK
        k = j
    return status


def plan_segments(a: Analysis, cfg: PrepareConfig) -> tuple[list[tuple[int, int]], list[list]]:
    """Kept [start, end) frame ranges, and skipped spans [reason, start_s, end_s]."""
    n, skipped, runs, start = len(a.status), [], [], None
    k = 0
    while k < n:  # spans of unusable frames, by reason
        if a.status[k] != OK:
            j = k
            while j < n and a.status[j] == a.status[k]:
                j += 1
            skipped.append([REASONS[int(a.status[k])], round(k / FPS, 3), round(j / FPS, 3)])
            k = j
        else:
            k += 1
    for k in range(n + 1):
        ok = k < n and a.status[k] == OK
        if start is not None and (not ok or a.cut[k]):
            runs.append((start, k))
            start = None
        if ok and start is None:
            start = k
    min_n, max_n = int(round(cfg.min_seconds * FPS)), int(round(cfg.max_seconds * FPS))
    kept = []
    for s, e in runs:
        if e - s < min_n:
            why = "scene cut" if (s > 0 and a.cut[s]) or (e < n and a.cut[e]) else "usable span"
            skipped.append([f"too short ({why}, {(e - s) / FPS:.2f} s)", round(s / FPS, 3), round(e / FPS, 3)])
            continue
        parts = -(-(e - s) // max_n)
        bounds = np.linspace(s, e, parts + 1).round().astype(int)
        kept += [(int(b0), int(b1)) for b0, b1 in zip(bounds[:-1], bounds[1:])]
    return kept, sorted(skipped, key=lambda r: r[1])


def crop_path(points: np.ndarray, cfg: PrepareConfig) -> np.ndarray:
    """(N, 3) smoothed crop centre x, y and side (source pixels) for a segment's landmarks."""
    path = face_crop_box(points, cfg.eye_y, cfg.iod_frac, cfg.eye_mouth_frac)
    sigma = cfg.smooth_seconds * FPS
    return gaussian_filter1d(path, sigma, axis=0, mode="nearest") if sigma > 0 and len(path) > 1 else path


def crop_jitter(path: np.ndarray) -> float:
    """Largest frame-to-frame move of the crop centre, as a fraction of the crop side."""
    if len(path) < 2:
        return 0.0
    return float((np.linalg.norm(np.diff(path[:, :2], axis=0), axis=1) / path[1:, 2]).max())


_VAD: Any = None


def speech_mask(audio: np.ndarray, n_frames: int, threshold: float) -> np.ndarray:
    """(n_frames,) 1 where silero-vad hears speech for most of the frame."""
    global _VAD
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    if _VAD is None:
        _VAD = load_silero_vad()
    per_sample = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    if audio.size and np.abs(audio).max() > 0:
        for seg in get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), _VAD,
                                         threshold=threshold, sampling_rate=SAMPLE_RATE):
            per_sample[seg["start"] : seg["end"]] = 1.0
    return (per_sample.reshape(n_frames, SAMPLES_PER_FRAME).mean(1) > 0.5).astype(np.int64)


def _frame_audio(audio: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    out[: min(audio.size, out.size)] = audio[: out.size]
    return out


def _partner_track(path: Path) -> Path | None:
    for suffix in (".partner.wav", ".partner.flac", ".partner.mp3", ".partner.m4a"):
        p = path.with_name(path.stem + suffix)
        if p.is_file():
            return p
    return None


def _round(a: np.ndarray, nd: int = 4) -> list:
    return [round(float(v), nd) + 0.0 for v in a]


def segment_meta(clip_id: str, ident: str, split: str, pts: np.ndarray, voice: np.ndarray, partner: np.ndarray,
                 audio: np.ndarray, has_partner: bool, cfg: PrepareConfig) -> dict[str, Any]:
    n = len(pts)
    ctl = controls_from_features(raw_features(pts))
    state = np.where(voice == 1, STATE_ID["speak"], np.where(partner == 1, STATE_ID["listen"], STATE_ID["idle"]))
    frames: dict[str, list] = {"state": [int(v) for v in state], "voice": [int(v) for v in voice],
                               "partner_voice": [int(v) for v in partner]}
    energy = np.sqrt((audio.reshape(n, SAMPLES_PER_FRAME) ** 2).mean(1))
    sigma = cfg.control_seconds * FPS
    for k, v in ctl.items():
        frames[k] = _round(v)
    for k in CONTROLS:
        frames[f"ctrl_{k}"] = _round(gaussian_filter1d(ctl[k], sigma, mode="nearest") if n > 1 else ctl[k])
    frames["energy"] = _round(energy, 5)
    segments, s = [], 0
    for k in range(1, n + 1):
        if k == n or state[k] != state[s]:
            segments.append([STATES[int(state[s])], round(s / FPS, 4), round(k / FPS, 4)])
            s = k
    return {"format_version": FORMAT_VERSION, "clip_id": clip_id, "source": "real", "identity": ident,
            "split": split, "fps": FPS, "sample_rate": SAMPLE_RATE, "n_frames": n, "duration": round(n / FPS, 4),
            "has_partner": has_partner, "voice": {}, "segments": segments, "utterances": [], "frames": frames}


def _split_of(vid: str, fraction: float) -> str:
    return "test" if int(hashlib.sha1(vid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction else "train"


def prepare_video(path: Path, root: Path, out: Path, cfg: PrepareConfig, fa: FaceAnalyzer | None = None) -> dict[str, Any]:
    """Analyse, cut, crop and write one video's clips; returns its report (also saved)."""
    vid = video_id(path, root)
    report: dict[str, Any] = {"video": path.relative_to(root).as_posix(), "id": vid, "clips": [], "skipped": []}
    t0 = time.perf_counter()
    try:
        audio = read_video_audio(path)
        if audio is None:
            raise DatasetError("the video has no audio track")
        fa = fa or FaceAnalyzer(cfg.detect_side)
        a = analyse(path, cfg, fa)
    except (MediaError, DatasetError) as e:
        report.update(status="failed", error=str(e))
        log.warning("skipping %s: %s", path, e)
        return _save_report(out, report)
    n = len(a.status)
    report.update(seconds=round(n / FPS, 3), source_size=list(a.size))
    kept, report["skipped"] = plan_segments(a, cfg)
    audio = _frame_audio(audio, n)
    voice = speech_mask(audio, n, cfg.vad_threshold)
    partner_path = _partner_track(path)
    partner = speech_mask(_frame_audio(read_audio(partner_path), n), n, cfg.vad_threshold) if partner_path else np.zeros(n, np.int64)
    paths = [crop_path(a.points[s:e], cfg) for s, e in kept]
    split = _split_of(vid, cfg.test_fraction)
    clips_dir = out / "clips"
    frames_iter = enumerate(resample_frames(iter_video_frames(path, with_times=True)))
    for j, ((s, e), cp) in enumerate(zip(kept, paths)):
        clip_id = f"{vid}-{j:03d}"
        crops = []
        for k, frame in frames_iter:
            if k >= s:
                cx, cy, side = cp[k - s]
                crops.append(crop_frame(frame, cx, cy, side, cfg.resolution))
            if k == e - 1:
                break
        if len(crops) != e - s:
            raise DatasetError(f"{path}: second decoding pass gave fewer frames than the first")
        # Landmarks in crop pixels, for evaluation (mouth aperture, landmark distance).
        lm = (a.points[s:e] - (cp[:, None, :2] - cp[:, None, 2:] / 2)) * (cfg.resolution / cp[:, None, 2:])
        seg_audio = audio[s * SAMPLES_PER_FRAME : e * SAMPLES_PER_FRAME]
        meta = segment_meta(clip_id, vid, split, a.points[s:e], voice[s:e], partner[s:e], seg_audio,
                            partner_path is not None, cfg)
        tmp = clips_dir / f".{clip_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_video(tmp / "video.mp4", np.stack(crops), seg_audio, crf=cfg.crf)
        sf.write(tmp / "audio.wav", seg_audio, SAMPLE_RATE, subtype="PCM_16")
        np.save(tmp / "landmarks.npy", lm.astype(np.float32), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, separators=(",", ":"), sort_keys=True))
        shutil.rmtree(clips_dir / clip_id, ignore_errors=True)
        tmp.rename(clips_dir / clip_id)
        report["clips"].append({"clip_id": clip_id, "start": round(s / FPS, 3), "end": round(e / FPS, 3),
                                "crop_jitter": round(crop_jitter(cp), 5),
                                "speech_fraction": round(float(voice[s:e].mean()), 3)})
    report.update(status="done", elapsed=round(time.perf_counter() - t0, 2),
                  kept_seconds=round(sum(e - s for s, e in kept) / FPS, 3))
    return _save_report(out, report)


def _save_report(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    (out / "videos").mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "videos" / f"{report['id']}.json", "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    return report


# --------------------------------------------------------------------------- whole directory

_FA: FaceAnalyzer | None = None


def _worker(job: tuple[str, str, str, PrepareConfig]) -> dict[str, Any]:
    global _FA
    path, root, out, cfg = job
    import torch

    torch.set_num_threads(1)  # one video per process; VAD would otherwise oversubscribe
    _FA = _FA or FaceAnalyzer(cfg.detect_side)
    return prepare_video(Path(path), Path(root), Path(out), cfg, _FA)


def list_videos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def cache_latents(out: Path, vae_run: str | Path, progress: bool = True) -> int:
    """Write each clip's VAE latents (clips/<id>/latents.safetensors, tagged with the VAE's
    fingerprint, which teacher training checks before reusing them); returns how many were new."""
    from safetensors.torch import save

    from rtavatar.checkpoints import load_codec
    from rtavatar.data.dataset import Dataset
    from rtavatar.latents import PREPARED_LATENTS, encode_frames, latents_fingerprint

    codec = load_codec(vae_run)
    ds, made = Dataset(out), 0
    for i in tqdm(range(len(ds)), desc="latents", disable=not progress):
        path = out / ds.records[i]["path"] / PREPARED_LATENTS
        if path.is_file() and latents_fingerprint(path) == codec.fingerprint:
            continue
        z = encode_frames(codec, ds.load(i).frames)
        with atomic_write(path) as f:
            f.write(save({"latents": z.contiguous()}, {"vae": codec.fingerprint}))
        made += 1
    return made


def prepare_dataset(videos: str | Path, out: str | Path, cfg: PrepareConfig, workers: int = 0, resume: bool = False,
                    vae: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Prepare every video under `videos` into `out`; returns the summary (also summary.json).
    With `vae` (a `train vae` run), also cache every clip's latents."""
    root, out = Path(videos), Path(out)
    if not root.is_dir():
        raise DatasetError(f"--videos {root} is not a directory")
    found = list_videos(root)
    if not found:
        raise DatasetError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) under {root}")
    info = {"format_version": FORMAT_VERSION, "source": "real", "fps": FPS, "sample_rate": SAMPLE_RATE,
            "resolution": cfg.resolution, "states": list(STATES), "controls": list(CONTROLS),
            "int_columns": list(INT_COLUMNS), "float_columns": list(FLOAT_COLUMNS), "prepare": to_dict(cfg)}
    info_path = out / "dataset.json"
    for debris in (out / "clips").glob(".*.tmp") if (out / "clips").is_dir() else []:  # left by a killed run
        shutil.rmtree(debris, ignore_errors=True)
    if out.is_dir():
        remove_temp_debris(out)
    if info_path.is_file():
        if not resume:
            raise DatasetError(f"{out} already holds a dataset: pass --resume to continue it, or use a new --out")
        if json.loads(info_path.read_text()).get("prepare") != info["prepare"]:
            raise DatasetError(f"{out} was prepared with different settings; use a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(info_path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    done = {p.stem for p in (out / "videos").glob("*.json")} if resume else set()
    todo = [p for p in found if video_id(p, root) not in done]
    log.info("%d videos, %d already prepared, %d to do", len(found), len(found) - len(todo), len(todo))
    jobs = [(str(p), str(root), str(out), cfg) for p in todo]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    t0 = time.perf_counter()
    if workers == 1:
        for j in tqdm(jobs, desc="videos", disable=not progress):
            _worker(j)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=die_with_parent) as pool:
            list(tqdm(pool.map(_worker, jobs), total=len(jobs), desc="videos", disable=not progress))
    elapsed = time.perf_counter() - t0
    summary = _finish(out, found, root, elapsed, {video_id(p, root) for p in todo})
    if vae:
        summary["latents_cached"] = cache_latents(out, vae, progress)
    return summary


def _finish(out: Path, found: list[Path], root: Path, elapsed: float, now: set[str]) -> dict[str, Any]:
    reports = [json.loads((out / "videos" / f"{video_id(p, root)}.json").read_text()) for p in found]
    records, reasons = [], {}
    for r in reports:
        for c in r["clips"]:
            meta = json.loads((out / "clips" / c["clip_id"] / "meta.json").read_text())
            records.append({"clip_id": c["clip_id"], "path": f"clips/{c['clip_id']}", "identity": meta["identity"],
                            "split": meta["split"], "n_frames": meta["n_frames"], "duration": meta["duration"],
                            "resolution": json.loads((out / "dataset.json").read_text())["resolution"],
                            "has_partner": meta["has_partner"],
                            "states": sorted({STATES[s] for s in meta["frames"]["state"]})})
        for why, s, e in r["skipped"]:
            key = why.split(" (")[0]
            reasons[key] = round(reasons.get(key, 0.0) + e - s, 3)
        if r["status"] == "failed":
            reasons["failed video"] = reasons.get("failed video", 0) + 1
    with atomic_write(out / "manifest.jsonl", "w") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    seconds_now = sum(r.get("seconds", 0.0) for r in reports if r["id"] in now)
    summary = {
        "videos": len(reports), "processed_now": len(now), "failed": [r["video"] for r in reports if r["status"] == "failed"],
        "clips": len(records), "input_seconds": round(sum(r.get("seconds", 0.0) for r in reports), 2),
        "kept_seconds": round(sum(r["duration"] for r in records), 2), "skipped_seconds_by_reason": reasons,
        "elapsed_seconds": round(elapsed, 2),
        # video-minutes prepared per wall-clock minute, over the videos processed in this call
        "throughput": round(seconds_now / elapsed, 3) if now and elapsed > 0 else None,
        "max_crop_jitter": max((c["crop_jitter"] for r in reports for c in r["clips"]), default=0.0),
    }
    with atomic_write(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    log.info("prepared %d clips (%.1f s kept) from %d videos into %s", len(records), summary["kept_seconds"], len(reports), out)
    return summary
