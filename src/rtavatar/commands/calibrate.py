"""`rtavatar calibrate-warp`: the gain of paste mode `warp`'s mouth reader for a model: its
readings of the openings the model draws on photo clips, against the clips' true openings
(docs/RESULTS.md). Calibrate on training-split clips (`synth-data --test-fraction 0
--photo-fraction 1`): the held-out people are for reporting.

    rtavatar calibrate-warp --data data/devclips [--clips 6] [--checkpoint CK] [--expert RUN] [--out F.json] [--write]

The reader is the checkpoint's own (its aperture head if it ships one, else MouthReader), or
with `--expert` the aperture head of that `train syncnet` run. `--write` records the gain in
the checkpoint's inference.json (`warp_gain`, what paste mode `warp` uses), by default the
shipped model's, and with `--expert` ships that head as the model's reader (reader.safetensors).

Each photo clip's first frame is the portrait (upscaled 4x so dlib finds its landmarks); the
model animates it with the clip's own audio, and the reader (gain 1) reads each generated face.
The gain is the least-squares slope through the origin of the true opening on the reading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtavatar.engine import Avatar
from rtavatar.errors import DatasetError
from rtavatar.media import read_audio, read_video
from rtavatar.photo.readers import ExpertMouthReader, MouthReader

log = logging.getLogger(__name__)


def photo_clips(data: str | Path, clips: int) -> list[dict[str, Any]]:
    """The first `clips` photo clips (identity not `synth*`) of a synth-data dataset's manifest."""
    root = Path(data)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise DatasetError(f"--data {root}: no manifest.jsonl there (a `rtavatar synth-data --portraits` dataset)")
    recs = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if not r["identity"].startswith("synth")][:clips]
    if not recs:
        raise DatasetError(f"--data {root} has no photo clips (make them with synth-data --portraits DIR --photo-fraction 1)")
    return recs


def calibrate_warp(avatar: Avatar, data: str | Path, clips: int = 4, head: Any = None) -> dict[str, Any]:
    """Read the openings `avatar` draws on the dataset's photo clips with `head` (an
    ApertureHead; None: MouthReader, the pixel darkening) at gain 1; returns per-clip rows and
    the overall `gain` (true opening over the reading) and `r`."""
    root = Path(data)
    rows, reads, truths = [], [], []
    for rec in photo_clips(root, clips):
        clip = root / rec["path"]
        meta = json.loads((clip / "meta.json").read_text())
        first = read_video(clip / "video.mp4", with_audio=False).frames[0]
        big = np.asarray(Image.fromarray(first).resize((4 * first.shape[1], 4 * first.shape[0]), Image.BICUBIC))
        p = avatar.portrait(big)
        audio = read_audio(clip / "audio.wav")
        faces = avatar.generate(p, audio)
        cs = avatar.sampler()
        recon = cs.reconstruction(cs.reference(p.face))
        x0, y0, side = p.box
        reader = (ExpertMouthReader(recon, head) if head is not None else
                  MouthReader(recon, (p.landmarks - np.array([x0, y0], np.float64)) * (avatar.resolution / side)))
        got = np.array([reader(f) for f in faces])
        true = np.asarray(meta["frames"]["mouth_open"], np.float64)[: len(got)]
        got = got[: len(true)]
        rows.append({"clip": rec["clip_id"], "identity": rec["identity"], "r": float(np.corrcoef(got, true)[0, 1]),
                     "slope": float(true @ got / max(got @ got, 1e-9))})
        reads.append(got)
        truths.append(true)
        log.info("%s", rows[-1])
    g, t = np.concatenate(reads), np.concatenate(truths)
    return {"clips": rows, "gain": float(t @ g / max(g @ g, 1e-9)), "r": float(np.corrcoef(g, t)[0, 1])}


def run_calibrate(data: str | Path, checkpoint: str | None = None, expert: str | None = None, clips: int = 4,
                  out: str | Path | None = None, write: bool = False) -> dict[str, Any]:
    """calibrate_warp for a checkpoint (default: the shipped model); `out`: also write the result
    as JSON; `write`: record the gain (rounded to 0.01) in the checkpoint's inference.json, and
    with `expert` ship that run's aperture head as the model's reader."""
    from rtavatar.checkpoints import pretrained_path, set_warp_gain

    photo_clips(data, clips)  # a wrong --data fails before the model loads
    target = (checkpoint or pretrained_path()) if write else None
    avatar = Avatar.load(checkpoint) if checkpoint else Avatar.from_pretrained()
    head = avatar.bundle.reader
    if expert:
        from rtavatar.evaluation.sync import load_expert
        from rtavatar.models.syncnet import ApertureHead

        head = ApertureHead.of(load_expert(expert).net)
    res = calibrate_warp(avatar, data, clips, head)
    res |= {"model": checkpoint or "shipped", "reader": expert or ("expert" if head is not None else "dark")}
    if out:
        Path(out).write_text(json.dumps(res, indent=1) + "\n")
    if target is not None:
        set_warp_gain(target, round(res["gain"], 2), head if expert else None)
    return res
