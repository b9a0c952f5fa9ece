"""`rtavatar eval --videos DIR`: self-reenactment on real talking clips, read with dlib.

Per clip (any container PyAV reads; a folder is searched for VIDEO_SUFFIXES, a single file
is taken as it is): the frames at 25 fps (the source frame nearest each 1/25 s) and the
clip's own audio at 16 kHz mono; dlib's detector and 68 landmarks on every frame (a frame
where the detector misses keeps the previous frame's landmark box for up to MAX_MISSED
frames, as `rtavatar prepare` tracks; frames with no face are left out of every measure).
The portrait is the frame of the first second (25 frames) in which the detector found the
face and the inner lips are closest (`photo.landmarks.inner_gap`); the model animates it
with the clip's own audio (paste-back on, the CLI's renderer options, seed fixed), one
generated frame per real frame, and dlib reads the generated frames the same way. Then,
frame by frame (same index), on the frames where both have a face, everything in
inter-ocular distances (IOD) of each frame, in the face's own axes (eye line = x):

- `gap_r`, `gap_lag`: Pearson r between the generated and the real inner-lip gap, the best
  over lags of -MAX_LAG..MAX_LAG frames (lag > 0: the generated mouth is late); `gap_r0` is
  the r at lag 0;
- `gap_std_ratio`: std of the generated gap / std of the real one (the amplitude);
  `gap_speech_ratio`: mean gap over speech frames, generated / real (speech: the frame's
  audio energy above 0.3 x its 95th percentile, `evaluation/photos.speech_masks`);
- `width_r`: Pearson r of mouth width (outer corners 48-54) at lag 0;
- `mouth_dist`: points 48-67 centred on their mean, in IOD: mean Euclidean distance between
  generated and real, x100; `mouth_dist_still` is the same for the portrait frame's own mouth
  held still (a mouth that never moves: the reference the model has to beat);
- `head_ratio`: std of the nose tip (30) relative to the eye line (both axes, the mean
  removed: sqrt(var x + var y)), generated / real (`head_gen`, `head_real`);
- `blinks_gen`, `blinks_real`: blinks a minute: closures of the eye-aspect ratio (EAR, both
  eyes' mean) below 0.6 x the clip's median EAR lasting 1-8 frames (a closure ends when the
  EAR is back above 0.75 x the median: `count_blinks`);
- `identity`: median dlib 128-d embedding distance between the portrait frame and every
  EMBED_EVERY-th generated frame (dlib's same-person threshold is 0.6), as eval --photos;
- secondary, `loud_r_real` / `loud_r_gen`: the real / generated gap against the frame's
  audio RMS (eval --photos' `gap_energy_r`): the person's own value shows how far loudness
  is from what a mouth does; it is not a target.

A strip per clip (`--strip`): 8 evenly spaced real frames above the generated frames at the
same indices, a fixed square around the person's face; FILE.png/.jpg writes one sheet of all
clips, a folder one PNG per clip. A clip that cannot be scored (no audio track, no face in the
first second, unreadable) gets a row with "error" instead.

With `--seeds N` each clip is rendered with N renderer seeds (blinks and head sway differ, and
the sway moves dlib's reading of a small mouth by a few hundredths) and each measure is the
mean over them; the medians are over those means.

None of these is a published metric: they are our measures with dlib's landmarks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from rtavatar import FPS, SAMPLES_PER_FRAME
from rtavatar.errors import RTAvatarError
from rtavatar.evaluation.metrics import finite_pearson
from rtavatar.evaluation.photos import face_descriptor, frame_energy, list_files, speech_masks
from rtavatar.photo.align import FaceAnalyzer, landmark_box
from rtavatar.photo.landmarks import (EYE_LEFT_START, EYE_RIGHT_START, FEATURES, MOUTH, NOSE_TIP, face_axes, face_frame, inner_gap,
                                      raw_features)
from rtavatar.photo.options import PasteOptions

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")
MAX_MISSED = 5  # frames a detector miss is bridged by the previous landmarks' box (PrepareConfig.max_missed)
MAX_LAG = 2  # frames searched either side for the gap correlation
PORTRAIT_FRAMES = FPS  # the portrait is chosen among the first second's frames
EMBED_EVERY = 5  # identity: every 5th generated frame
BLINK_FRACTION, BLINK_FRAMES, BLINK_RECOVER = 0.6, (1, 8), 0.75
STRIP_TILES = 8
# Printed table: (key, header). Everything else is in the JSON rows.
TABLE = (("gap_r", "gap r (lag)"), ("gap_std_ratio", "gap std g/r"), ("gap_speech_ratio", "speech gap g/r"),
         ("width_r", "width r"), ("mouth_dist", "mouth dist x100 (still)"), ("head_ratio", "head g/r"),
         ("blinks_gen", "blinks/min g / r"), ("identity", "identity"), ("loud_r_real", "secondary: gap~loudness r, real / gen"))
COLUMNS = ("frames", "faces", "gap_r", "gap_lag", "gap_r0", "gap_std_ratio", "gap_speech_ratio", "width_r", "mouth_dist",
           "mouth_dist_still", "head_gen", "head_real", "head_ratio", "blinks_gen", "blinks_real", "identity", "loud_r_real", "loud_r_gen")


# --------------------------------------------------------------------------- measures on landmark arrays


def _ratio(a: float, b: float) -> float:
    return float(a / b) if np.isfinite(a) and np.isfinite(b) and b > 1e-9 else float("nan")


def _shift(a: np.ndarray, b: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(a[t + lag], b[t]) over the t where both exist."""
    n = len(a)
    return (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])


def lagged_r(gen: np.ndarray, real: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """The best Pearson r of gen[t + lag] against real[t] over |lag| <= max_lag, and its lag
    (> 0: `gen` is late); NaNs are left out; on a tie the smaller |lag| wins."""
    best, best_lag = float("nan"), 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        r = finite_pearson(*_shift(np.asarray(gen, float), np.asarray(real, float), lag))
        if np.isfinite(r) and not (np.isfinite(best) and r <= best):
            best, best_lag = r, lag
    return best, best_lag


def features(pts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame `gap` and `width` (raw_features' mouth_gap, mouth_w) of (N, 68, 2) landmarks."""
    with np.errstate(invalid="ignore", divide="ignore"):
        f = raw_features(np.asarray(pts, np.float64))
    return {"gap": f[:, FEATURES.index("mouth_gap")], "width": f[:, FEATURES.index("mouth_w")]}


def eye_aspect_ratio(pts: np.ndarray) -> np.ndarray:
    """(N,) the two eyes' mean EAR: (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) of each eye's six points."""
    pts = np.asarray(pts, np.float64)
    d = lambda a, b: np.linalg.norm(pts[:, a] - pts[:, b], axis=-1)  # noqa: E731
    ears = [(d(e + 1, e + 5) + d(e + 2, e + 4)) / np.maximum(2 * d(e, e + 3), 1e-6) for e in (EYE_LEFT_START, EYE_RIGHT_START)]
    return (ears[0] + ears[1]) / 2


def count_blinks(ear: np.ndarray, fraction: float = BLINK_FRACTION, frames: tuple[int, int] = BLINK_FRAMES,
                 recover: float = BLINK_RECOVER) -> int:
    """Closures: the EAR falls below `fraction` x its median and stays below it for
    `frames[0]`-`frames[1]` frames (first to last frame below), where one closure lasts until
    the EAR is back above `recover` x the median (so jitter about the threshold inside one
    closure does not count twice, and a long look down is one long closure, not several blinks).
    A frame with no face (NaN) ends a closure."""
    ear = np.asarray(ear, float)
    if not np.isfinite(ear).any():
        return 0
    med = float(np.nanmedian(ear))
    count, first, last = 0, None, None
    for i, e in enumerate(list(ear) + [np.nan]):
        if np.isfinite(e) and e < fraction * med:
            first = i if first is None else first
            last = i
        elif first is not None and (not np.isfinite(e) or e >= recover * med):
            count += frames[0] <= last - first + 1 <= frames[1]
            first = last = None
    return count


def head_motion(face: np.ndarray) -> float:
    """std of the nose tip in face-frame coordinates (IOD), both axes: sqrt(var x + var y)."""
    tip = face[:, NOSE_TIP]
    tip = tip[np.isfinite(tip).all(1)]
    return float(np.sqrt(tip.var(0).sum())) if len(tip) >= 2 else float("nan")


def loudness_r(gap: np.ndarray, energy: np.ndarray) -> float:
    """eval --photos' `gap_energy_r`: the gap (3-frame mean, missing frames as 0) against the
    frame energy, on the frames with a face."""
    ok = np.isfinite(gap)
    smooth = np.convolve(np.nan_to_num(gap), np.ones(3) / 3, mode="same")
    return finite_pearson(smooth[ok], energy[ok])


def compare(real: np.ndarray, gen: np.ndarray, energy: np.ndarray | None = None, *, portrait: int | None = None,
            fps: float = FPS, max_lag: int = MAX_LAG) -> dict[str, float]:
    """The module docstring's measures from (N, 68, 2) real and generated landmarks (NaN rows:
    no face) and the (N,) frame energy (None: no speech or loudness columns); with the
    `portrait` frame's index also `mouth_dist_still`."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    if real.shape != gen.shape:
        raise ValueError(f"real {real.shape} and generated {gen.shape} landmarks differ in shape")
    n = len(real)
    both = np.isfinite(real).all((1, 2)) & np.isfinite(gen).all((1, 2))
    fr, fg = features(real), features(gen)
    mask = lambda x: np.where(both, x, np.nan)  # noqa: E731
    gr, gg = mask(fr["gap"]), mask(fg["gap"])
    r, lag = lagged_r(gg, gr, max_lag)
    row: dict[str, float] = {"frames": n, "faces": float(both.mean()) if n else float("nan"), "gap_r": r,
                             "gap_lag": lag, "gap_r0": finite_pearson(gg, gr),
                             "gap_std_ratio": _ratio(float(np.nanstd(gg)), float(np.nanstd(gr))) if both.any() else float("nan"),
                             "width_r": finite_pearson(mask(fg["width"]), mask(fr["width"]))}
    ffr, ffg = face_frame(real), face_frame(gen)
    cr, cg = ffr[:, MOUTH], ffg[:, MOUTH]
    cr, cg = cr - cr.mean(1, keepdims=True), cg - cg.mean(1, keepdims=True)
    dist = np.linalg.norm(cg - cr, axis=-1).mean(1)
    row["mouth_dist"] = 100 * float(dist[both].mean()) if both.any() else float("nan")
    if portrait is not None and np.isfinite(cr[portrait]).all():
        still = np.linalg.norm(cr[portrait][None] - cr, axis=-1).mean(1)
        row["mouth_dist_still"] = 100 * float(np.nanmean(np.where(both, still, np.nan))) if both.any() else float("nan")
    row["head_gen"] = head_motion(np.where(both[:, None, None], ffg, np.nan))
    row["head_real"] = head_motion(np.where(both[:, None, None], ffr, np.nan))
    row["head_ratio"] = _ratio(row["head_gen"], row["head_real"])
    minutes = n / fps / 60
    row["blinks_gen"] = count_blinks(eye_aspect_ratio(gen)) / minutes if n else float("nan")
    row["blinks_real"] = count_blinks(eye_aspect_ratio(real)) / minutes if n else float("nan")
    if energy is not None:
        energy = np.asarray(energy, float)[:n]
        speech, _ = speech_masks(energy)
        s = speech & both
        row["gap_speech_ratio"] = _ratio(float(gg[s].mean()), float(gr[s].mean())) if s.any() else float("nan")
        row["loud_r_real"] = loudness_r(np.where(np.isfinite(real).all((1, 2)), fr["gap"], np.nan), energy)
        row["loud_r_gen"] = loudness_r(np.where(np.isfinite(gen).all((1, 2)), fg["gap"], np.nan), energy)
    return row


# --------------------------------------------------------------------------- reading clips and faces


@dataclass
class Track:
    """dlib on a sequence of frames."""

    points: np.ndarray  # (N, 68, 2) float64 landmarks in frame pixels, NaN where no face
    detected: np.ndarray  # (N,) the detector found the face on that frame (False: tracked, or no face)
    embeddings: dict[int, np.ndarray]  # frame index -> dlib 128-d face descriptor (every `embed_every`-th frame)


def track_faces(frames: np.ndarray | list[np.ndarray], fa: FaceAnalyzer, rec: Any = None, embed_every: int = EMBED_EVERY,
                max_missed: int = MAX_MISSED) -> Track:
    """Detect and landmark every frame (the largest face); a miss keeps the previous
    landmarks' box for up to `max_missed` frames. With `rec` (dlib's face-recognition model)
    every `embed_every`-th frame with a face also gets its descriptor."""
    n = len(frames)
    pts, det, emb = np.full((n, 68, 2), np.nan), np.zeros(n, bool), {}
    prev, missed = None, 0
    for i, f in enumerate(frames):
        faces = fa.detect(f)
        if faces:
            box, missed, det[i] = faces[0].box, 0, True
        else:
            missed += 1
            box = landmark_box(prev) if prev is not None and missed <= max_missed else None
        if box is None:
            prev = None
            continue
        pts[i] = prev = fa.landmarks(f, box)
        if rec is not None and i % embed_every == 0:
            emb[i] = face_descriptor(fa, rec, f, box)
    return Track(pts, det, emb)


def list_videos(root: str | Path) -> list[Path]:
    """`root` itself if it is a file, else the files under it with a VIDEO_SUFFIXES suffix."""
    return list_files(root, VIDEO_SUFFIXES, "--videos", "video files")


def read_clip(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A clip's frames at 25 fps (N, H, W, 3) and its audio, 16 kHz mono, exactly N x 640
    samples (cut or zero-padded) so the model makes one frame per real frame."""
    from rtavatar.data.prepare import resample_frames
    from rtavatar.media import read_video

    clip = read_video(path)
    if clip.audio is None:
        raise RTAvatarError(f"{Path(path).name}: the video has no audio track (self-reenactment needs the clip's own voice)")
    frames = clip.frames
    if abs(clip.fps - FPS) > 1e-3:
        frames = np.stack(list(resample_frames(((i / clip.fps, f) for i, f in enumerate(frames)), FPS)))
    n = len(frames)
    audio = np.zeros(n * SAMPLES_PER_FRAME, np.float32)
    audio[: min(len(clip.audio), len(audio))] = clip.audio[: len(audio)]
    return frames, audio


def pick_portrait(track: Track, first: int = PORTRAIT_FRAMES) -> int:
    """The index, among the first `first` frames where the detector found the face, of the one
    with the smallest inner-lip gap."""
    cand = [i for i in range(min(first, len(track.detected))) if track.detected[i]]
    if not cand:
        raise RTAvatarError(f"dlib finds no face in the first {first} frames (the portrait is taken from the first second)")
    return min(cand, key=lambda i: inner_gap(track.points[i]))


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else float("nan")


def score_clip(real: np.ndarray, gen: np.ndarray, audio: np.ndarray, portrait_index: int, fa: FaceAnalyzer, rec: Any = None,
               real_track: Track | None = None) -> dict[str, float]:
    """`compare` on dlib's reading of the real and generated frames (same count), plus the
    identity distance of the generated frames to the portrait frame (with `rec`)."""
    if len(gen) != len(real):
        raise RTAvatarError(f"{len(gen)} generated frames for {len(real)} real ones")
    rt = real_track or track_faces(real, fa)
    gt = track_faces(gen, fa, rec)
    row = compare(rt.points, gt.points, frame_energy(audio, len(real)), portrait=portrait_index)
    row["identity"] = float("nan")
    faces = fa.detect(real[portrait_index]) if rec is not None and gt.embeddings else []
    if faces:
        ref = face_descriptor(fa, rec, real[portrait_index], faces[0].box)
        row["identity"] = _median([float(np.linalg.norm(e - ref)) for e in gt.embeddings.values()])
    return row


# --------------------------------------------------------------------------- strips


def face_box(points: np.ndarray, scale: float = 3.4) -> tuple[float, float, float] | None:
    """One square (centre x, y, side) around a clip's face over all its frames (N, 68, 2): the
    landmarks' median centre, `scale` x the median IOD wide; None with no face."""
    ok = np.isfinite(points).all((1, 2))
    if not ok.any():
        return None
    c = np.median(points[ok].mean(1), 0)
    iod = float(np.median([face_axes(p)[3] for p in points[ok]]))
    return float(c[0]), float(c[1]), scale * iod


def strip(real: np.ndarray, gen: np.ndarray, tiles: int = STRIP_TILES, height: int = 112, label: str = "",
          box: tuple[float, float, float] | None = None) -> np.ndarray:
    """`tiles` evenly spaced real frames above the generated frames at the same indices, each
    `height` px high; with `box` (centre x, y, side in real-frame pixels) both rows show that
    square (the generated frames' box scaled by their size over the real ones'); a band with
    `label` on top when given."""
    from rtavatar.photo.align import crop_frame

    idx = np.linspace(0, len(real) - 1, min(tiles, len(real))).round().astype(int)

    def tile(f: np.ndarray, k: float) -> np.ndarray:
        if box is not None:
            return crop_frame(f, box[0] * k, box[1] * k, box[2] * k, height)
        return np.asarray(Image.fromarray(f).resize((max(1, round(f.shape[1] * height / f.shape[0])), height), Image.LANCZOS))

    top = np.concatenate([tile(real[i], 1.0) for i in idx], 1)
    bottom = np.concatenate([tile(gen[i], gen.shape[2] / real.shape[2]) for i in idx], 1)
    w = max(top.shape[1], bottom.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, w - a.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    out = np.concatenate([pad(top), pad(bottom)])
    if label:
        band = Image.new("RGB", (w, 14), (255, 255, 255))
        ImageDraw.Draw(band).text((3, 1), label, fill=(0, 0, 0))
        out = np.concatenate([np.asarray(band), out])
    return out


def write_strips(strips: list[tuple[str, np.ndarray]], dest: str | Path) -> list[Path]:
    """`dest` with an image suffix (.png, .jpg, .jpeg): one sheet, the clips one under the other
    (JPEG at quality 85); otherwise a folder with `<clip stem>.png` per clip."""
    dest = Path(dest)
    if not strips:
        return []
    if dest.suffix.lower() in (".png", ".jpg", ".jpeg"):
        w = max(s.shape[1] for _, s in strips)
        gap = np.full((6, w, 3), 255, np.uint8)
        parts = []
        for _, s in strips:
            parts += [np.pad(s, ((0, 0), (0, w - s.shape[1]), (0, 0)), constant_values=255), gap]
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(parts[:-1])).save(dest, quality=85)
        return [dest]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, s in strips:
        out.append(dest / f"{Path(name).stem}.png")
        Image.fromarray(s).save(out[-1])
    return out


# --------------------------------------------------------------------------- the command


def _seed_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each measure's mean over one clip's rows rendered with different seeds (NaN where every seed's is)."""
    with np.errstate(invalid="ignore"):
        return {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) if any(np.isfinite(r.get(k, np.nan)) for r in rows)
                else float("nan") for k in rows[0]}


def evaluate_videos(avatar: Any, videos: list[Path], *, paste: PasteOptions | None = None, steps: int | None = None,
                    seed: int = 0, seeds: int = 1, strip_to: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Self-reenact and score each clip (module docstring). Returns {"rows": per clip (a row
    with "error" where a clip cannot be used), "median": over the clips that scored}. With
    `seeds` > 1 each clip is rendered with the renderer's seeds seed .. seed + seeds - 1 (their
    blinks and head sway differ, and dlib's reading of a small mouth moves with the sway) and
    its row holds each measure's mean over them (`per_seed`: the single runs)."""
    if seeds < 1:
        raise RTAvatarError(f"seeds must be at least 1, got {seeds}")
    from rtavatar.evaluation.photos import FaceReader

    reader = FaceReader()
    fa, rec = reader.fa, reader.rec
    paste = paste or PasteOptions()
    rows, strips = [], []
    for path in tqdm(videos, desc="videos", disable=not progress):
        try:
            real, audio = read_clip(path)
            track = track_faces(real, fa)
            k = pick_portrait(track)
            portrait = avatar.portrait(real[k])
            runs = []
            for s in range(seed, seed + seeds):
                frames = avatar.generate(portrait, audio, paste=paste, steps=steps, seed=s)[: len(real)]
                if s == seed:
                    gen = frames  # the strip shows the first seed's
                runs.append(score_clip(real, frames, audio, k, fa, rec, track))
            row = {"clip": path.name, "seconds": round(len(real) / FPS, 2), "portrait_frame": k, **(_seed_mean(runs) if seeds > 1 else runs[0])}
            if seeds > 1:
                row["per_seed"] = runs
        except RTAvatarError as e:
            rows.append({"clip": path.name, "error": " ".join(str(e).split())})
            log.warning("%s: %s", path.name, e)
            continue
        rows.append(row)
        if strip_to:
            label = f"{path.name}: real (top), generated (below); gap r {row['gap_r']:.2f}"
            strips.append((path.name, strip(real, gen, label=label, box=face_box(track.points))))
    if strip_to:
        write_strips(strips, strip_to)
    scored = [r for r in rows if "error" not in r]
    median = {k: _median([r.get(k, float("nan")) for r in scored]) for k in COLUMNS} if scored else {}
    out = {"rows": rows, "median": median, "clips": len(rows), "scored": len(scored), "seed": seed, "seeds": seeds,
           "paste": paste.to_dict(), "steps": steps}
    if seeds > 1 and scored:
        out["median_per_seed"] = [{k: _median([r["per_seed"][j].get(k, float("nan")) for r in scored]) for k in COLUMNS}
                                  for j in range(seeds)]
    return out


def _cell(r: dict[str, Any], key: str) -> str:
    f = lambda k, fmt="{:.2f}": "–" if r.get(k) is None or not np.isfinite(r[k]) else fmt.format(r[k])  # noqa: E731
    if key == "gap_r":
        lag = r.get("gap_lag")
        return f("gap_r") + ("" if lag is None or not np.isfinite(lag) else f" ({lag:+.0f})" if lag == int(lag) else f" ({lag:+.1f})")
    if key == "blinks_gen":
        return f"{f('blinks_gen', '{:.0f}')} / {f('blinks_real', '{:.0f}')}"
    if key == "loud_r_real":
        return f"{f('loud_r_real')} / {f('loud_r_gen')}"
    if key == "mouth_dist":
        return f"{f('mouth_dist', '{:.1f}')} ({f('mouth_dist_still', '{:.1f}')})"
    return f(key)


def format_video_table(result: dict[str, Any]) -> str:
    lines = ["| clip | " + " | ".join(h for _, h in TABLE) + " |", "|" + "---|" * (len(TABLE) + 1)]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['clip']} | error: {r['error']} |")
        else:
            lines.append(f"| {r['clip']} | " + " | ".join(_cell(r, k) for k, _ in TABLE) + " |")
    if result.get("median"):
        lines.append(f"| **median of {result['scored']}** | " + " | ".join(_cell(result["median"], k) for k, _ in TABLE) + " |")
    if result.get("seeds", 1) > 1:
        lines.append(f"\nEach row: the mean over the renderer's seeds {result['seed']}-{result['seed'] + result['seeds'] - 1}.")
    return "\n".join(lines)


def jsonable(x: Any) -> Any:
    """JSON without NaN (strict parsers refuse it): NaN -> None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return jsonable(x.item())
    return x
