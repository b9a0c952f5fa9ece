"""The official SyncNet (Chung & Zisserman 2016; `syncnet_v2.model` from joonson/syncnet_python)
as a SyncScorer, for users who have its weights locally. Nothing is downloaded.

Its inputs follow the reference implementation: 224x224 face crops as BGR floats in 0..255
(no normalisation), 5-frame windows; audio as 13 MFCCs at 100 Hz from python_speech_features
with its defaults, on 16-bit sample values, 20 MFCC frames per window; features are the
un-normalised 1024-d outputs. With these weights, sync_scores gives the published LSE-C/LSE-D
(on real faces; the network never saw cartoon faces, so on synthetic data it says little).

The layer list below is written so that the module indices match the released state dict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar import SAMPLE_RATE
from rtavatar.errors import RTAvatarError

# ("c", in, out, kernel, stride, padding) -> Conv + BatchNorm + ReLU; ("p", kernel, stride, padding) -> MaxPool
_AUDIO = [("c", 1, 64, (3, 3), 1, 1), ("p", (1, 1), (1, 1), 0), ("c", 64, 192, (3, 3), 1, 1), ("p", (3, 3), (1, 2), 0),
          ("c", 192, 384, (3, 3), 1, 1), ("c", 384, 256, (3, 3), 1, 1), ("c", 256, 256, (3, 3), 1, 1),
          ("p", (3, 3), (2, 2), 0), ("c", 256, 512, (5, 4), 1, 0)]
_LIP = [("c", 3, 96, (5, 7, 7), (1, 2, 2), 0), ("p", (1, 3, 3), (1, 2, 2), 0),
        ("c", 96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("p", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
        ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)), ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)),
        ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)), ("p", (1, 3, 3), (1, 2, 2), 0), ("c", 256, 512, (1, 6, 6), 1, 0)]


def _stack(spec: list[tuple], dims: int) -> nn.Sequential:
    conv, bn, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    layers: list[nn.Module] = []
    for kind, *a in spec:
        if kind == "c":
            c_in, c_out, k, s, p = a
            layers += [conv(c_in, c_out, k, stride=s, padding=p), bn(c_out), nn.ReLU()]
        else:
            layers.append(pool(a[0], stride=a[1], padding=a[2]))
    return nn.Sequential(*layers)


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class OfficialSyncNet(nn.Module):
    def __init__(self, dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud, self.netfcaud = _stack(_AUDIO, 2), _head(dim)
        self.netcnnlip, self.netfclip = _stack(_LIP, 3), _head(dim)

    def forward_aud(self, mfcc: Tensor) -> Tensor:  # (B, 1, 13, 20)
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, video: Tensor) -> Tensor:  # (B, 3, 5, 224, 224)
        return self.netfclip(self.netcnnlip(video).flatten(1))


class OfficialSyncNetScorer:
    """SyncScorer over the official weights at `path` (a torch state dict of tensors; loaded
    with weights_only=True, so a file holding code is refused)."""

    window = 5

    def __init__(self, path: str | Path, batch: int = 16) -> None:
        p = Path(path)
        if not p.is_file():
            raise RTAvatarError(f"official SyncNet weights {p} not found: download syncnet_v2.model yourself "
                                "(joonson/syncnet_python, download_model.sh) where you have network access")
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "not these weights"
            raise RTAvatarError(f"{p} is not a SyncNet state dict ({type(e).__name__}: {e})") from e
        self.net = OfficialSyncNet()
        try:
            self.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            raise RTAvatarError(f"{p} does not match the official SyncNet architecture: {e}") from e
        self.net.eval()
        self.batch = batch

    @torch.no_grad()
    def video_embeddings(self, frames: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(0, 3, 1, 2).float()  # RGB -> BGR, 0..255
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        wins = x.unfold(0, self.window, 1).permute(0, 1, 4, 2, 3)  # (N-4, 3, 5, 224, 224)
        return torch.cat([self.net.forward_lip(wins[k : k + self.batch]) for k in range(0, len(wins), self.batch)])

    @torch.no_grad()
    def audio_embeddings(self, audio: np.ndarray, n_frames: int) -> Tensor:
        from python_speech_features import mfcc  # the reference front end, for comparable numbers

        wav = np.zeros(n_frames * 640, np.float64)
        wav[: min(len(audio), wav.size)] = audio[: wav.size]
        cc = torch.from_numpy(mfcc(wav * 32768.0, SAMPLE_RATE).T.astype(np.float32))  # (13, T) at 100 Hz
        cc = F.pad(cc, (0, max(0, 4 * n_frames - cc.shape[1])))
        wins = torch.stack([cc[:, 4 * i : 4 * i + 20] for i in range(n_frames - self.window + 1)])[:, None]
        return torch.cat([self.net.forward_aud(wins[k : k + self.batch]) for k in range(0, len(wins), self.batch)])
