"""Reading the dataset format of docs/DATA.md (synthetic clips now, prepared real video later)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtavatar.errors import DatasetError, MediaError
from rtavatar.media import read_audio, read_video


@dataclass
class Clip:
    """One clip: frames (N,H,W,3) uint8, 16 kHz mono audio, per-frame columns, clip facts."""

    clip_id: str
    frames: np.ndarray
    audio: np.ndarray
    columns: dict[str, np.ndarray]
    meta: dict[str, Any]
    partner_audio: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frames)


class Dataset:
    """A dataset directory: dataset.json + manifest.jsonl + clips/<id>/{video.mp4,audio.wav,meta.json}."""

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root = Path(root)
        info_path, manifest_path = self.root / "dataset.json", self.root / "manifest.jsonl"
        for p in (info_path, manifest_path):
            if not p.is_file():
                raise DatasetError(f"{self.root} is not an rtavatar dataset: {p.name} is missing (see docs/DATA.md)")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text())
            records = [json.loads(line) for line in manifest_path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise DatasetError(f"{self.root}: malformed dataset.json or manifest.jsonl ({e})") from e
        self.records = [r for r in records if split is None or r.get("split") == split]
        self.split = split

    def require(self) -> "Dataset":
        """Self, or a clear error when it holds no clips (of its split)."""
        if not self.records:
            where = f" in split {self.split!r}" if self.split else ""
            raise DatasetError(f"{self.root}: no clips{where} (see docs/DATA.md; `synth-data --test-fraction` sets the split)")
        return self

    def __len__(self) -> int:
        return len(self.records)

    def meta(self, i: int) -> dict[str, Any]:
        path = self.root / self.records[i]["path"] / "meta.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DatasetError(f"{path}: cannot read clip metadata ({e})") from e

    def load(self, i: int, with_frames: bool = True) -> Clip:
        rec = self.records[i]
        clip_dir = self.root / rec["path"]
        meta = self.meta(i)
        try:
            frames = read_video(clip_dir / "video.mp4", with_audio=False).frames if with_frames else np.zeros((0,), np.uint8)
            audio = read_audio(clip_dir / "audio.wav")
            partner = read_audio(clip_dir / "partner.wav") if meta.get("has_partner") else None
        except MediaError as e:
            raise DatasetError(f"clip {rec['clip_id']} in {self.root}: {e}") from e
        n = meta["n_frames"]
        if with_frames and len(frames) != n:
            raise DatasetError(f"clip {rec['clip_id']}: video has {len(frames)} frames, meta.json says {n}")
        columns = {k: np.asarray(v) for k, v in meta["frames"].items()}
        return Clip(rec["clip_id"], frames, audio, columns, meta, partner)
