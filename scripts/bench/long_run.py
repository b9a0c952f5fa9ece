"""Long-duration stability of a Session: a 10-minute stream (15,000 frames) with per-minute
memory, colour statistics, identity distance and (with an expert) sync score.

    python scripts/bench/long_run.py [--checkpoint RUN] [--expert SYNCNET_RUN] [--minutes 10] [--window 60] \\
        [--image portrait.png] --out docs/results/engine/long_run_cpu.json [--plot docs/results/engine/long_run_cpu.png]

Speech (espeak-ng, a sentence repeated with pauses) is pushed one second at a time whenever
the reader has caught up, as a live client would. Every row (`--window` seconds, a minute by
default): the process RSS, the mean and std of each colour channel over the row's frames and
their distance to the first row's, the dlib face-embedding distance of sampled frames to the
portrait (when dlib finds the face: 0.6 is dlib's same-person threshold), and the sync
expert's Sync-C on the row's first 10 s. Without --checkpoint it runs random tiny weights:
then only the memory curve means anything.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from rtavatar import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from rtavatar.commands.bench import bench_speech, plain_portrait
from rtavatar.engine import Avatar
from rtavatar.photo.options import PasteOptions


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Identity:
    """dlib's 128-d face embedding (None where dlib is missing or finds no face)."""

    def __init__(self) -> None:
        try:
            import dlib

            from rtavatar.photo.align import FaceAnalyzer, _models_dir

            self.fa = FaceAnalyzer()
            self.rec = dlib.face_recognition_model_v1(str(_models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))
            self.dlib = dlib
        except Exception:  # noqa: BLE001 - optional
            self.fa = None

    def embed(self, img: np.ndarray) -> np.ndarray | None:
        if self.fa is None:
            return None
        big = np.asarray(__import__("PIL.Image").Image.fromarray(img).resize((256, 256)))
        faces = self.fa.detect(big)
        if not faces:
            return None
        shape = self.fa.predictor(big, self.dlib.rectangle(*(int(round(v)) for v in faces[0].box)))
        return np.array(self.rec.compute_face_descriptor(big, shape))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--expert", default=None, help="a `train syncnet` run: per-minute Sync-C (of the raw face: not with --paste-back)")
    p.add_argument("--image", default=None, help="portrait (default: a plain gradient, aligned as a crop)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--window", type=float, default=60.0, help="seconds per row (default a minute; 5 shows a decay within seconds)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--out", required=True)
    p.add_argument("--plot", default=None)
    p.add_argument("--paste-back", action="store_true",
                   help="with --image: paste every frame back into the photo (the default warp) and score each minute's "
                        "first 10 s as `rtavatar eval --photos` does (dlib gap vs speech energy r, speech/silence, identity)")
    p.add_argument("--strip", default=None, help="PNG: eight of each minute's frames, a row a minute, to look at")
    a = p.parse_args()
    if a.paste_back and not a.image:
        p.error("--paste-back needs --image")
    avatar = Avatar.load(a.checkpoint, precision=a.precision) if a.checkpoint else Avatar.random("tiny", precision=a.precision)
    r = avatar.resolution
    if a.image:
        portrait = avatar.portrait(a.image)
    else:
        portrait = avatar.portrait(plain_portrait(r), align="center")
    if a.paste_back:  # scored as a photo (score_photo's identity), not as the raw face
        from rtavatar.evaluation.photos import FaceReader, score_photo

        reader, ref_emb = FaceReader(), None
    else:
        ident = Identity()
        ref_emb = ident.embed(portrait.face)
    scorer = None
    if a.expert:
        from rtavatar.evaluation.sync import load_expert, sync_scores

        scorer = load_expert(a.expert)
    speech = bench_speech(20.0)
    total = int(a.minutes * 60 * FPS)
    per_min = max(1, int(round(a.window * FPS)))  # frames per row
    s = avatar.session(portrait, buffer=16, paste=PasteOptions() if a.paste_back else None)
    pushed = 0  # frames of audio pushed
    minute: list[np.ndarray] = []
    minute_audio: list[np.ndarray] = []
    rows, strip = [], []
    t0 = time.perf_counter()
    it = s.frames(timeout=60)
    n = 0
    while n < total:
        while pushed * SAMPLES_PER_FRAME < (n + 2 * FPS) * SAMPLES_PER_FRAME and pushed < total:
            off = (pushed * SAMPLES_PER_FRAME) % len(speech)
            piece = np.roll(speech, -off)[:SAMPLE_RATE]
            s.push_audio(piece)
            pushed += FPS
            if pushed >= total:
                s.close()  # all audio is in: the last frames need no more look-ahead
        f = next(it)
        n += 1
        minute.append(f.image if len(minute) % 5 == 0 else None)  # every 5th frame kept for statistics
        if len(minute_audio) < 10 * FPS:
            minute_audio.append((f.image, f.audio))
        if n % per_min == 0 or n == total:
            imgs = np.stack([m for m in minute if m is not None]).astype(np.float32)
            row = {"minute": round(n / (60 * FPS), 3), "frames": n, "rss_mb": round(rss_mb(), 1),
                   "seconds": round(time.perf_counter() - t0, 1),
                   "mean_rgb": imgs.mean((0, 1, 2)).round(2).tolist(), "std_rgb": imgs.std((0, 1, 2)).round(2).tolist()}
            if ref_emb is not None:
                embs = [e for e in (ident.embed(im.astype(np.uint8)) for im in imgs[:: max(1, len(imgs) // 20)]) if e is not None]
                row["identity_dist"] = round(float(np.mean([np.linalg.norm(e - ref_emb) for e in embs])), 4) if embs else None
                row["faces_found"] = len(embs)
            fr = np.stack([x for x, _ in minute_audio])  # the minute's first 10 s and their audio
            au = np.concatenate([y for _, y in minute_audio])
            if a.paste_back:
                scores = score_photo(reader, portrait.image, fr, au)
                row.update({k: round(float(scores[k]), 4) for k in ("gap_energy_r", "speech_silence", "identity", "detect")})
            elif scorer is not None:
                row["sync_c"] = round(float(sync_scores(scorer, fr, au)["sync_c"]), 4)
            rows.append(row)
            strip.append(np.concatenate(list(imgs[:: max(1, len(imgs) // 8)][:8].astype(np.uint8)), 1))
            print(json.dumps(row), file=sys.stderr, flush=True)
            minute, minute_audio = [], []
    first = np.array(rows[0]["mean_rgb"])
    for row in rows:
        row["colour_shift"] = round(float(np.abs(np.array(row["mean_rgb"]) - first).max()), 3)
    out = {"checkpoint": a.checkpoint or "random tiny weights", "precision": a.precision, "frames": n, "rows": rows,
           "fps": round(n / (time.perf_counter() - t0), 2), "rss_growth_mb": round(rows[-1]["rss_mb"] - rows[0]["rss_mb"], 1)}
    Path(a.out).write_text(json.dumps(out, indent=1))
    if a.strip:
        from PIL import Image

        width = max(r.shape[1] for r in strip)
        Image.fromarray(np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in strip])).save(a.strip)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [("rss_mb", "RSS (MB)"), ("colour_shift", "max |mean RGB - minute 1|")]
        if any(r.get("identity_dist") is not None for r in rows):
            panels.append(("identity_dist", "dlib identity distance to portrait"))
        if scorer is not None:
            panels.append(("sync_c", "Sync-C (our expert)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3))
        for ax, (k, label) in zip(np.atleast_1d(axes), panels):
            ax.plot([r["minute"] for r in rows], [r.get(k) for r in rows], "o-")
            ax.set_xlabel("minute")
            ax.set_title(label, fontsize=9)
        fig.suptitle(f"{n} frames, {out['checkpoint']}, {a.precision}", fontsize=9)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
