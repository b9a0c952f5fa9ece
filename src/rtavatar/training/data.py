"""Training batches from the dataset format (docs/DATA.md).

Batches are drawn from a torch.Generator (see training.common: one per step), so a step's
global batch is reproducible; each process keeps its slice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.models.conditioning import CONTROL_SCALE, CONTROLS
from rtavatar.data.dataset import Clip, Dataset
from rtavatar.data.face import width_factor
from rtavatar.latents import PREPARED_LATENTS, encode_frames, latents_fingerprint
from rtavatar.models.vae import LatentCodec

log = logging.getLogger(__name__)

CONTROL_COLUMNS = tuple(f"ctrl_{k}" for k in CONTROLS)


def controls_of(columns: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 7) model-scale expression controls of a clip's per-frame columns."""
    return np.stack([columns[c] for c in CONTROL_COLUMNS], axis=1).astype(np.float32) * CONTROL_SCALE


WIDTH_PARTS = ("mouth_width", "mouth_round", "smile")


def width_parts_of(columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, 3) float32: the parts the renderer's width_factor combines (WIDTH_PARTS), from a
    synthetic clip's columns; NaN for prepared video, whose measured `mouth_width` already
    includes the smile (no parts to vary)."""
    if not all(c in columns for c in WIDTH_PARTS):
        return np.full((n, 3), np.nan, np.float32)
    return np.stack([np.asarray(columns[c], np.float32)[:n] for c in WIDTH_PARTS], 1)


def log_width_of(columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n,) log of the mouth's width relative to the face at rest, NaN where unknown. Synthetic
    clips give the parts the renderer combines (width_parts_of); prepared video measures the
    width itself (`mouth_width`, relative to the clip's median)."""
    if "mouth_width" not in columns:
        return np.full(n, np.nan)
    parts = width_parts_of(columns, n).astype(np.float64)
    k = width_factor(*parts.T) if not np.isnan(parts).all() else 1 + np.asarray(columns["mouth_width"], np.float64)[:n]
    return np.log(np.clip(k, 0.2, None))


class ClipCache:
    """Decoded clips kept in memory (LRU, bounded by bytes)."""

    def __init__(self, dataset: Dataset, max_bytes: int = 4 << 30) -> None:
        self.ds, self.max_bytes = dataset.require(), max_bytes
        self._clips: OrderedDict[int, Clip] = OrderedDict()
        self._bytes = 0

    def get(self, i: int) -> Clip:
        if i in self._clips:
            self._clips.move_to_end(i)
            return self._clips[i]
        clip = self.ds.load(i)
        self._clips[i] = clip
        self._bytes += clip.frames.nbytes
        while self._bytes > self.max_bytes and len(self._clips) > 1:
            _, old = self._clips.popitem(last=False)
            self._bytes -= old.frames.nbytes
        return clip


def random_frames(cache: ClipCache, gen: torch.Generator, n: int) -> Tensor:
    """n random frames in [-1, 1], (n, 3, H, W)."""
    out = []
    for _ in range(n):
        ci = int(torch.randint(len(cache.ds), (1,), generator=gen))
        clip = cache.get(ci)
        fi = int(torch.randint(clip.n_frames, (1,), generator=gen))
        out.append(clip.frames[fi])
    return LatentCodec.to_tensor(np.stack(out))


class LatentClips:
    """Per-clip VAE latents (cached on disk beside the run), audio, states and controls."""

    def __init__(self, dataset: Dataset, codec: LatentCodec, cache_dir: Path, batch: int = 32) -> None:
        self.ds = dataset.require()
        self.latents: list[Tensor] = []
        self.audio: list[Tensor] = []
        self.state: list[Tensor] = []
        self.controls: list[Tensor] = []
        self.partner: list[Tensor | None] = []  # the other speaker's track, where a clip has one
        self.width_parts: list[Tensor] = []  # (N, 3) width_parts_of: NaN unless synthetic
        cache_dir.mkdir(parents=True, exist_ok=True)
        codec.eval()
        fingerprint = getattr(codec, "fingerprint", None)
        for i in tqdm(range(len(dataset)), desc="latents", leave=False):
            rec = dataset.records[i]
            path = cache_dir / f"{rec['clip_id']}.safetensors"
            prepared = dataset.root / rec["path"] / PREPARED_LATENTS  # from `rtavatar prepare --vae`
            if fingerprint and prepared.is_file() and latents_fingerprint(prepared) == fingerprint:
                path = prepared
            if path.is_file():
                z = load_file(path)["latents"]
                clip = dataset.load(i, with_frames=False)
            else:
                clip = dataset.load(i)
                z = encode_frames(codec, clip.frames, batch)
                save_file({"latents": z.contiguous()}, path)
            self.latents.append(z)
            self.audio.append(torch.from_numpy(clip.audio[: clip.meta["n_frames"] * SAMPLES_PER_FRAME].astype(np.float32)))
            self.state.append(torch.from_numpy(np.asarray(clip.columns["state"], np.int64)))
            self.controls.append(torch.from_numpy(controls_of(clip.columns)))
            n = clip.meta["n_frames"]
            pa = clip.partner_audio
            self.partner.append(None if pa is None else torch.from_numpy(pa[: n * SAMPLES_PER_FRAME].astype(np.float32)))
            self.width_parts.append(torch.from_numpy(width_parts_of(clip.columns, n)))

    def __len__(self) -> int:
        return len(self.latents)

    def latent_std(self) -> float:
        return float(torch.cat([z.flatten() for z in self.latents]).std())

    def residual_std(self, pairs: int = 8) -> float:
        """Std of (frame latent - another frame of the same clip): the scale of what the
        reference-residual diffusion has to produce. Fixed seed, so reruns agree."""
        gen = torch.Generator().manual_seed(0)
        diffs = []
        for z in self.latents:
            i, j = torch.randint(len(z), (2, pairs), generator=gen)
            diffs.append((z[i] - z[j]).flatten())
        return float(torch.cat(diffs).std())

    def sample(self, gen: torch.Generator, batch: int, frames: int, audio_margin: int,
               partner_p: float = 0.0) -> dict[str, Tensor]:
        """A global batch of `frames`-long windows: latents, audio (with margin frames each side,
        zero-padded at clip edges), state, controls, a reference latent from the same clip, and
        the per-frame width parts (`width_parts`, (B, F, 3)). With probability `partner_p` a
        clip's audio is what the room hears, its own track plus the other speaker's: the face
        must then stay shut while it listens, whatever the audio holds."""
        lat, wav, st, ctl, ref, wp = [], [], [], [], [], []
        for _ in range(batch):
            ci = int(torch.randint(len(self), (1,), generator=gen))
            z = self.latents[ci]
            n = len(z)
            s = int(torch.randint(max(1, n - frames + 1), (1,), generator=gen))
            idx = torch.arange(s, s + frames).clamp(max=n - 1)
            lat.append(z[idx])
            st.append(self.state[ci][idx])
            ctl.append(self.controls[ci][idx])
            ref.append(z[int(torch.randint(n, (1,), generator=gen))])
            wp.append(self.width_parts[ci][idx])
            a = self.audio[ci]
            lo, hi = (s - audio_margin) * SAMPLES_PER_FRAME, (s + frames + audio_margin) * SAMPLES_PER_FRAME
            seg = _window(a, lo, hi, len(a))
            if partner_p > 0 and float(torch.rand(1, generator=gen)) < partner_p and self.partner[ci] is not None:
                seg += _window(self.partner[ci], lo, hi, len(a))  # only where the own track has audio
            wav.append(seg)
        return {"latents": torch.stack(lat), "audio": torch.stack(wav), "state": torch.stack(st),
                "controls": torch.stack(ctl), "ref": torch.stack(ref), "width_parts": torch.stack(wp)}


def _window(track: Tensor, lo: int, hi: int, end: int) -> Tensor:
    """track[lo:hi], zero outside [0, min(len(track), end))."""
    seg = torch.zeros(hi - lo)
    src_lo, src_hi = max(lo, 0), min(hi, len(track), end)
    if src_hi > src_lo:
        seg[src_lo - lo : src_hi - lo] = track[src_lo:src_hi]
    return seg
