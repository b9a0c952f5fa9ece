"""Media I/O: the one place rtavatar reads and writes audio, images and video.

Everything else in the package works on plain arrays with fixed conventions
(DESIGN.md §2):

* audio  — float32 mono in [-1, 1] at ``SAMPLE_RATE`` (16 kHz);
* images — ``H x W x 3`` uint8 RGB;
* video  — ``FPS`` (25) frames per second, frame ``i`` covers audio samples
  ``[i * 640, (i + 1) * 640)``.

Files are decoded with PyAV (FFmpeg) and Pillow; every failure is turned into a
typed :mod:`rtavatar.errors` exception whose message names the file (or
``"<array>"`` for in-memory input) and says what is wrong in plain words.

PyAV / FFmpeg behaviour this module relies on (checked against PyAV 18):

* AAC encoders prepend 1024 "priming" samples. When audio starts with the
  video, the MP4 muxer records them in an edit list and the decoder drops them
  (skip-samples side data), so the first decoded audio frame has pts 0. When
  audio starts later, the priming frame is kept and simply carries pts
  ``start - 1024``. Either way the first decoded frame's pts is right, so
  :func:`read_video` aligns audio by it (relative to the first video frame)
  instead of assuming audio sample 0 is frame 0.
* libswresample's stereo->mono matrix scales each side by 1/sqrt(2); we
  resample per channel and average instead, matching :func:`validate_audio`.
* AAC pads the *end* to a whole 1024-sample frame and FFmpeg does not trim that
  tail on decode; the audio stream's declared duration is exact, so decoded
  audio is trimmed to it (only when the excess is small enough to be padding —
  durations estimated from bitrate can be wrong and must not cut real audio).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import FPS, SAMPLE_RATE
from .errors import (
    ChannelLayoutError,
    CorruptMediaError,
    EmptyAudioError,
    MediaError,
    MediaNotFoundError,
    MediaSizeError,
    UnsupportedMediaError,
)

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Longest audio we agree to decode (4 h is ~0.9 GB of float32 at 16 kHz).
MAX_AUDIO_SECONDS: float = 4 * 3600.0
#: Most audio channels we interpret (7.1 is 8).
MAX_CHANNELS: int = 8
#: Largest image / video side we accept.
MAX_IMAGE_SIDE: int = 8192
MAX_IMAGE_PIXELS: int = 50_000_000  # a 50 MP picture; larger ones take seconds and gigabytes to decode
#: read_video() holds every frame in memory; past this, use iter_video_frames().
MAX_READ_VIDEO_BYTES: int = 8 * 1024**3
#: Decoded audio longer than the declared duration by at most this is encoder
#: padding and is trimmed; a larger excess means the declared duration is wrong.
_MAX_PADDING_SECONDS: float = 0.25
#: AAC frame size; also a sensible chunk for feeding any audio encoder.
_AUDIO_CHUNK: int = 1024
#: Containers write_video can put H.264 + AAC into, by file suffix.
_MUXERS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Pixel formats whose chroma is subsampled horizontally / vertically.
_HALF_WIDTH = {"yuv420p", "yuvj420p", "nv12", "yuv422p", "yuvj422p", "yuv420p10le", "yuv422p10le"}
_HALF_HEIGHT = {"yuv420p", "yuvj420p", "nv12", "yuv420p10le"}


# --------------------------------------------------------------------------- helpers


def _check_path(path: PathLike, what: str) -> Path:
    """Resolve the existence questions before FFmpeg/Pillow turn them into vaguer errors."""
    p = Path(path)
    if not p.exists():
        raise MediaNotFoundError(f"{what} file {p} does not exist")
    if p.is_dir():
        raise UnsupportedMediaError(f"{what} path {p} is a directory, not a file")
    return p


def _open_av(p: Path, what: str) -> Any:
    """av.open with FFmpeg's errors mapped onto ours."""
    try:
        # metadata_errors="replace": a badly encoded title tag must not make a file unreadable.
        return av.open(str(p), metadata_errors="replace")
    except av.error.FileNotFoundError as e:  # raced with a delete
        raise MediaNotFoundError(f"{what} file {p} does not exist") from e
    except av.error.IsADirectoryError as e:
        raise UnsupportedMediaError(f"{what} path {p} is a directory, not a file") from e
    except av.error.PermissionError as e:
        raise UnsupportedMediaError(f"{what} file {p} cannot be read: permission denied") from e
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise CorruptMediaError(
            f"{what} file {p} is not a readable media file (unknown format or corrupt data: {e})"
        ) from e


def _decode_error(p: Path, what: str, e: Exception) -> CorruptMediaError:
    return CorruptMediaError(f"{what} file {p} is corrupt: decoding failed ({e})")


def _stream_seconds(stream: Any) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _container_seconds(container: Any) -> float | None:
    # container.duration is in AV_TIME_BASE (microseconds).
    return None if container.duration is None else container.duration / 1_000_000


def _check_audio_stream(stream: Any, p: Path, what: str) -> None:
    """Reject absurd audio before decoding a single packet."""
    channels = stream.codec_context.channels
    if channels > MAX_CHANNELS:
        raise ChannelLayoutError(
            f"{what} file {p} has {channels} audio channels; at most {MAX_CHANNELS} are supported"
        )
    seconds = _stream_seconds(stream)
    if seconds is not None and seconds > MAX_AUDIO_SECONDS:
        raise MediaSizeError(
            f"{what} file {p} has {seconds / 3600:.1f} h of audio; the limit is {MAX_AUDIO_SECONDS / 3600:.0f} h"
        )


class _AudioCollector:
    """Resamples decoded audio frames to float32 mono and enforces the duration limit.

    Channels are resampled separately and then averaged, not mixed by
    libswresample: its stereo->mono matrix scales each side by 1/sqrt(2), which
    would make files louder than the same array passed to validate_audio.
    ``start`` is the time (s) of the first decoded frame, so callers can align
    audio against another stream.
    """

    def __init__(self, p: Path, what: str, sample_rate: int, max_seconds: float = MAX_AUDIO_SECONDS) -> None:
        self.p, self.what, self.sample_rate = p, what, sample_rate
        self.resampler: Any = None
        self.setup: tuple[Any, ...] | None = None
        self.chunks: list[np.ndarray] = []
        self.n = 0
        self.start: float | None = None
        self.max_seconds = max_seconds
        self.limit = int(max_seconds * sample_rate)

    def _take(self, frames: list[Any]) -> None:
        for f in frames:
            # "fltp" gives (channels, samples).
            a = f.to_ndarray()
            a = a[0] if a.shape[0] == 1 else a.mean(axis=0, dtype=np.float32)
            self.chunks.append(a)
            self.n += a.size
        if self.n > self.limit:
            raise MediaSizeError(f"{self.what} file {self.p} has more than {_span(self.max_seconds)} of audio (the limit)")

    def add(self, frame: Any) -> None:
        nch = frame.layout.nb_channels
        if nch > MAX_CHANNELS:
            raise ChannelLayoutError(
                f"{self.what} file {self.p} has {nch} audio channels; at most {MAX_CHANNELS} are supported"
            )
        if self.start is None and frame.pts is not None and frame.time_base is not None:
            self.start = float(frame.pts * frame.time_base)
        setup = (frame.layout.name, frame.format.name, frame.sample_rate)
        if setup != self.setup:
            # A resampler is fixed to its first input; streams may change layout/rate midway.
            self._flush()
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=self.sample_rate)
            self.setup = setup
        self._take(self.resampler.resample(frame))

    def _flush(self) -> None:
        # The resampler holds back a filter's worth of samples until flushed.
        if self.resampler is not None:
            self._take(self.resampler.resample(None))

    def finish(self, declared_seconds: float | None) -> np.ndarray:
        self._flush()
        out = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        if declared_seconds is not None and declared_seconds > 0:
            want = int(round(declared_seconds * self.sample_rate))
            excess = out.size - want
            if 0 < excess <= _MAX_PADDING_SECONDS * self.sample_rate:
                out = out[:want]  # encoder end padding (AAC pads to 1024 samples)
        return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- audio


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _decode_audio_stream(container: Any, stream: Any, p: Path, what: str, sample_rate: int,
                         max_seconds: float = MAX_AUDIO_SECONDS) -> tuple[np.ndarray, float | None]:
    """Check and decode a whole audio stream: (mono float32 at sample_rate, its start in seconds).
    FFmpeg errors propagate for the caller to name."""
    _check_audio_stream(stream, p, what)
    col = _AudioCollector(p, what, sample_rate, max_seconds)
    for frame in container.decode(stream):
        col.add(frame)
    return col.finish(_stream_seconds(stream)), col.start


def _stream_start(stream: Any) -> float:
    """A stream's start time in seconds (0 when the container does not say)."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def read_audio(path: PathLike, sample_rate: int = SAMPLE_RATE, *, max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Decode an audio file, or the audio track of a video, to float32 mono at ``sample_rate``.

    Any format FFmpeg reads works (wav, flac, mp3, ogg, m4a, mp4, mkv, webm, mov, ...);
    the first audio stream is used and all channels are averaged. A file that declares more
    than ``max_seconds`` is refused before anything is decoded (and one that turns out longer,
    as soon as it does).

    Raises:
        MediaNotFoundError: the file does not exist.
        UnsupportedMediaError: a directory, or a file without an audio stream.
        CorruptMediaError: unknown format or undecodable data.
        ChannelLayoutError: more than 8 channels.
        MediaSizeError: longer than ``max_seconds``.
        EmptyAudioError: the audio has no samples.
    """
    p = _check_path(path, "audio")
    container = _open_av(p, "audio")
    try:
        if not container.streams.audio:
            raise UnsupportedMediaError(f"audio file {p} has no audio stream")
        stream = container.streams.audio[0]
        total = _container_seconds(container)
        if total is not None and total > max_seconds:
            raise MediaSizeError(f"audio file {p} lasts {_span(total)}; the limit is {_span(max_seconds)}")
        try:
            audio, _ = _decode_audio_stream(container, stream, p, "audio", sample_rate, max_seconds)
        except av.error.FFmpegError as e:
            raise _decode_error(p, "audio", e) from e
    finally:
        container.close()
    if audio.size == 0:
        raise EmptyAudioError(f"audio file {p} contains no samples")
    logger.debug("read_audio %s: %d samples at %d Hz", p, audio.size, sample_rate)
    return audio


def _audio_to_mono(samples: Any, name: str) -> np.ndarray:
    """Shape/dtype normalisation shared by validate_audio and write_video."""
    a = np.asarray(samples)
    if a.size == 0:
        raise EmptyAudioError(f"audio {name} contains no samples")
    if a.ndim == 0 or a.ndim > 2:
        raise ChannelLayoutError(
            f"audio {name} has shape {a.shape}; expected 1-D samples or 2-D (samples, channels)"
        )
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = a.astype(np.float32) / 2147483648.0
    elif a.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        a = (a.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
    else:
        raise UnsupportedMediaError(f"audio {name} has dtype {a.dtype}; expected float or int16 samples")
    if a.ndim == 2:
        # The channel axis is the short one: (n, C) or (C, n).
        ch_axis = int(np.argmin(a.shape))
        channels = a.shape[ch_axis]
        if channels > MAX_CHANNELS:
            raise ChannelLayoutError(
                f"audio {name} has shape {a.shape}: {channels} channels; at most {MAX_CHANNELS} are supported"
            )
        a = a.mean(axis=ch_axis, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise CorruptMediaError(f"audio {name} contains NaN or infinite samples")
    peak = float(np.max(np.abs(a)))
    if peak > 1.0:
        logger.warning("audio %s peaks at %.3f; clipping to [-1, 1]", name, peak)
        a = np.clip(a, -1.0, 1.0)
    return np.ascontiguousarray(a, dtype=np.float32)


def validate_audio(samples: Any, sample_rate: int, *, name: str = "<array>") -> np.ndarray:
    """Check in-memory audio handed to the API and return it as float32 mono in [-1, 1].

    Accepts 1-D samples or 2-D ``(n, C)`` / ``(C, n)`` with 1..8 channels (the
    shorter axis is taken as channels), int16 (scaled by 1/32768) or float.
    Only 16 kHz is accepted: silently resampling here would hide a caller's
    mistake, and :func:`read_audio` already resamples files.
    """
    if int(sample_rate) != SAMPLE_RATE:
        raise UnsupportedMediaError(
            f"audio {name} is at {sample_rate} Hz; rtavatar needs {SAMPLE_RATE} Hz mono — "
            "resample it (read_audio does this for files)"
        )
    return _audio_to_mono(samples, name)


# --------------------------------------------------------------------------- images


def _check_side(w: int, h: int, name: str, what: str, min_size: int, max_size: int) -> None:
    if min(w, h) < min_size:
        raise MediaSizeError(f"{what} {name} is {w}x{h}; each side must be at least {min_size} pixels")
    if max(w, h) > max_size:
        raise MediaSizeError(f"{what} {name} is {w}x{h}; each side must be at most {max_size} pixels")
    if w * h > MAX_IMAGE_PIXELS:
        raise MediaSizeError(f"{what} {name} is {w}x{h}; at most {MAX_IMAGE_PIXELS / 1e6:g} megapixels")


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def read_image(path: PathLike, *, min_size: int = 32, max_size: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Read an image (png, jpg, webp, bmp, ... anything Pillow decodes) as HxWx3 uint8 RGB.

    EXIF orientation is applied; transparency is composited on white; grey,
    palette, CMYK and 16-bit images are converted. Animated images give their
    first frame.
    """
    p = _check_path(path, "image")
    arr = _decode_image(p, str(p), min_size, max_size)
    logger.debug("read_image %s: %dx%d", p, arr.shape[1], arr.shape[0])
    return arr


def image_from_bytes(data: bytes, name: str = "image", *, min_size: int = 32, max_size: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """`read_image` for an image held in memory (an upload, a base64 portrait): the same checks,
    the header's dimensions before anything is decompressed."""
    return _decode_image(io.BytesIO(data), name, min_size, max_size)


def _decode_image(src: Any, name: str, min_size: int, max_size: int) -> np.ndarray:
    try:
        # Escalate Pillow's bomb *warning* too: with our limits it can only mean a hostile file.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                # Header only so far: check dimensions before decompressing anything.
                w, h = img.size
                _check_side(w, h, name, "image", min_size, max_size)
                img.load()
                img = ImageOps.exif_transpose(img)
                return _pil_to_rgb(img)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaSizeError(f"image {name} is too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        raise CorruptMediaError(f"image {name} is not an image Pillow can read (unknown format or corrupt)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncation as OSError and broken chunks as SyntaxError.
        raise CorruptMediaError(f"image {name} is corrupt or truncated ({e})") from e


def _pil_to_rgb(img: Any) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Pillow's convert("RGB") clips 16-bit values instead of scaling them.
        a = np.asarray(img, dtype=np.float32)
        if a.size and float(a.max()) > 255.0:
            a = a / 257.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if (mode == "P" and "transparency" in img.info) or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def validate_image(
    arr: Any, *, name: str = "<array>", min_size: int = 32, max_size: int = MAX_IMAGE_SIDE
) -> np.ndarray:
    """Check an in-memory image (HxW, HxWx1, HxWx3 or HxWx4 uint8) and return HxWx3 uint8 RGB."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise UnsupportedMediaError(f"image {name} has dtype {a.dtype}; expected uint8 RGB")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ChannelLayoutError(f"image {name} has shape {a.shape}; expected HxW, HxWx3 or HxWx4")
    _check_side(a.shape[1], a.shape[0], name, "image", min_size, max_size)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = _composite_on_white(a)
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- video writing


def _as_fraction(rate: int | float | Fraction) -> Fraction:
    fr = Fraction(rate).limit_denominator(1001)
    if fr <= 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    return fr


def _check_frame(frame: Any, i: int, name: str, size: tuple[int, int] | None) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
        raise ChannelLayoutError(
            f"video {name}: frame {i} has shape {f.shape} and dtype {f.dtype}; expected HxWx3 uint8 RGB"
        )
    h, w = f.shape[:2]
    if size is not None and (h, w) != size:
        raise MediaSizeError(
            f"video {name}: frame {i} is {w}x{h} but frame 0 was {size[1]}x{size[0]}; all frames must match"
        )
    if size is None:
        _check_side(w, h, name, "video", 1, MAX_IMAGE_SIDE)
    return f


class VideoWriter:
    """An H.264 (+ AAC) file written chunk by chunk: open, `add` frames and their audio as
    they are made, `close`. `write_video` is this with everything at once.

    Frame ``i`` gets pts ``i`` in time base ``1/fps``. Audio (1-D or 2-D, float or int16, at
    ``sample_rate``) is interleaved with the video as it arrives and, at close, trimmed or
    zero-padded to exactly ``n_frames * sample_rate / fps`` samples, so the audio track ends
    with the video. With ``audio=False`` the file has no audio track.

    With a chroma-subsampled ``pix_fmt`` (yuv420p) odd widths/heights are padded to even by
    repeating the last column/row, since H.264 4:2:0 cannot code odd sizes.
    ``pix_fmt="yuv444p"`` keeps full chroma (near-lossless dataset storage with a low ``crf``).

    The file is written to a temp file in the same directory and renamed into place at close,
    so readers never see a half-written video; on an error (or `abort`) the temp file is
    removed. Suffix picks the container: .mp4/.m4v (default), .mov or .mkv.
    """

    def __init__(self, path: PathLike, *, fps: int | float | Fraction = FPS, sample_rate: int = SAMPLE_RATE, audio: bool = True,
                 crf: int = 18, pix_fmt: str = "yuv420p", preset: str = "veryfast", audio_bitrate: int = 128_000) -> None:
        self.path = out = Path(path)
        self.name = str(out)
        suffix = out.suffix.lower()
        if suffix and suffix not in _MUXERS:
            raise UnsupportedMediaError(
                f"video {self.name}: cannot write H.264+AAC into a '{suffix}' file; use one of {sorted(_MUXERS)}"
            )
        if out.is_dir():
            raise UnsupportedMediaError(f"video {self.name}: is a directory")
        self._muxer = _MUXERS.get(suffix, "mp4")
        self.rate = _as_fraction(fps)
        self._time_base = Fraction(self.rate.denominator, self.rate.numerator)
        self.sample_rate, self.with_audio = sample_rate, audio
        self._opts = {"crf": str(crf), "preset": preset}
        self._pix_fmt, self._audio_bitrate = pix_fmt, audio_bitrate
        self._pad_w, self._pad_h = pix_fmt in _HALF_WIDTH, pix_fmt in _HALF_HEIGHT
        out.parent.mkdir(parents=True, exist_ok=True)
        # A unique hidden name in the same directory (so os.replace is atomic). Not mkstemp: FFmpeg
        # creates the file itself, so it gets the usual umask permissions rather than mkstemp's 0600.
        self._tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp{suffix or '.mp4'}"
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._size: tuple[int, int] | None = None
        self._extra = (0, 0)  # edge rows / columns added to reach even sizes
        self._audio = np.zeros(0, np.float32)  # received, not yet encoded
        self._a_pos = 0  # next audio sample to encode
        self._a_total = 0  # audio samples received
        self.frames = 0
        self.closed = False

    def _audio_end(self, n_frames: int) -> int:
        # Exact integer sample index where video frame n_frames starts.
        return n_frames * self.sample_rate * self.rate.denominator // self.rate.numerator

    def _open(self, f: np.ndarray) -> None:
        self._size = f.shape[:2]
        h, w = self._size
        eh, ew = (h % 2 if self._pad_h else 0), (w % 2 if self._pad_w else 0)
        self._extra = (eh, ew)
        if eh or ew:
            logger.info("video %s: padding %dx%d frames to %dx%d for %s", self.name, w, h, w + ew, h + eh, self._pix_fmt)
        self._container = av.open(str(self._tmp), "w", format=self._muxer)
        self._vstream = self._container.add_stream("libx264", rate=self.rate, options=self._opts)
        self._vstream.width, self._vstream.height, self._vstream.pix_fmt = w + ew, h + eh, self._pix_fmt
        if self.with_audio:
            self._astream = self._container.add_stream("aac", rate=self.sample_rate)
            self._astream.layout = "mono"
            self._astream.bit_rate = self._audio_bitrate

    def _emit_audio(self, upto: int, final: bool) -> None:
        # Feed audio in 1024-sample frames up to sample `upto`; zeros past what was received.
        while self._a_pos < upto and (final or upto - self._a_pos >= _AUDIO_CHUNK):
            if not final and self._a_total < self._a_pos + _AUDIO_CHUNK:
                return  # wait for the audio to arrive rather than pad in the middle
            k = min(_AUDIO_CHUNK, upto - self._a_pos)
            chunk = np.zeros(k, np.float32)
            have = self._audio[:k]
            chunk[: len(have)] = have
            self._audio = self._audio[k:]
            af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            af.sample_rate = self.sample_rate
            af.pts = self._a_pos
            af.time_base = Fraction(1, self.sample_rate)
            for pkt in self._astream.encode(af):
                self._container.mux(pkt)
            self._a_pos += k

    def add(self, frames: Iterable[np.ndarray] | np.ndarray = (), audio: np.ndarray | None = None) -> None:
        """Append frames (an (N, H, W, 3) array or HxWx3 frames) and audio samples."""
        if self.closed:
            raise MediaError(f"video {self.name}: already closed")
        try:
            if audio is not None and self.with_audio:
                mono = _audio_to_mono(audio, self.name)
                self._audio = np.concatenate([self._audio, mono])
                self._a_total += len(mono)
            for frame in frames:
                f = _check_frame(frame, self.frames, self.name, self._size)
                if self._container is None:
                    self._open(f)
                eh, ew = self._extra
                if eh or ew:
                    f = np.pad(f, ((0, eh), (0, ew), (0, 0)), mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                vf.pts = self.frames
                vf.time_base = self._time_base
                for pkt in self._vstream.encode(vf):
                    self._container.mux(pkt)
                self.frames += 1
            if self._astream is not None:
                self._emit_audio(self._audio_end(self.frames), final=False)
        except BaseException:
            self.abort()
            raise

    def close(self) -> int:
        """Finish the file, rename it into place; returns the frame count."""
        if self.closed:
            return self.frames
        try:
            if self.frames == 0:
                raise MediaSizeError(f"video {self.name}: no frames to write")
            for pkt in self._vstream.encode(None):
                self._container.mux(pkt)
            if self._astream is not None:
                self._emit_audio(self._audio_end(self.frames), final=True)
                for pkt in self._astream.encode(None):
                    self._container.mux(pkt)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        if self.with_audio and self._a_total != self._audio_end(self.frames):
            how = "trimmed" if self._a_total > self._audio_end(self.frames) else "zero-padded"
            logger.debug("video %s: audio %s from %d to %d samples", self.name, how, self._a_total, self._audio_end(self.frames))
        logger.debug("write_video %s: %d frames at %s fps", self.name, self.frames, self.rate)
        return self.frames

    def abort(self) -> None:
        """Discard the file (nothing is left behind)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the original error matters more than a failed close
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)
        self.closed = True

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray] | np.ndarray,
    audio: np.ndarray | None = None,
    *,
    fps: int | float | Fraction = FPS,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    preset: str = "veryfast",
    audio_bitrate: int = 128_000,
) -> int:
    """Encode RGB frames (and optional mono audio) to H.264 (+ AAC) and return the frame count.

    ``frames`` may be an array ``(N, H, W, 3)`` or any iterable of ``HxWx3`` uint8 frames,
    including a generator (frames are encoded as they arrive, so long videos never sit in
    memory). Everything else is as in `VideoWriter`, which this wraps.
    """
    w = VideoWriter(path, fps=fps, sample_rate=sample_rate, audio=audio is not None, crf=crf, pix_fmt=pix_fmt, preset=preset,
                    audio_bitrate=audio_bitrate)
    try:
        if audio is not None:
            w.add((), audio)
        for f in frames:
            w.add((f,))
        return w.close()
    except BaseException:
        w.abort()
        raise


# --------------------------------------------------------------------------- video reading


@dataclass
class VideoClip:
    """A decoded video: frames ``(N, H, W, 3)`` uint8 RGB, its frame rate and its audio.

    ``audio`` is float32 mono at ``sample_rate``, aligned so sample 0 is the
    start of frame 0; None when the file has no audio track.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int = SAMPLE_RATE


def _video_stream(container: Any, p: Path) -> Any:
    if not container.streams.video:
        raise UnsupportedMediaError(f"video file {p} has no video stream")
    stream = container.streams.video[0]
    w, h = stream.codec_context.width, stream.codec_context.height
    if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE:
        raise MediaSizeError(f"video file {p} is {w}x{h}; each side must be at most {MAX_IMAGE_SIDE} pixels")
    if w <= 0 or h <= 0:
        raise CorruptMediaError(f"video file {p} declares an invalid frame size {w}x{h}")
    return stream


def _stream_fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else float(FPS)


def probe_video(path: PathLike) -> dict[str, Any]:
    """Read a video's header: ``n_frames`` (estimate), ``fps``, ``width``, ``height``,
    ``duration`` (seconds, or None if unknown) and ``has_audio``."""
    p = _check_path(path, "video")
    container = _open_av(p, "video")
    try:
        stream = _video_stream(container, p)
        fps = _stream_fps(stream)
        duration = _stream_seconds(stream) or _container_seconds(container)
        n_frames = int(stream.frames or 0)
        if n_frames <= 0 and duration is not None:
            n_frames = int(round(duration * fps))  # containers like mkv don't store a frame count
        return {
            "n_frames": n_frames,
            "fps": fps,
            "width": int(stream.codec_context.width),
            "height": int(stream.codec_context.height),
            "duration": duration,
            "has_audio": bool(container.streams.audio),
        }
    finally:
        container.close()


def iter_video_frames(path: PathLike, *, with_times: bool = False) -> Iterator[Any]:
    """Yield a video's frames one by one as HxWx3 uint8 RGB (constant memory for long files).

    With ``with_times`` yield ``(seconds, frame)``, the time relative to the first frame
    (the clock that :func:`read_video_audio` aligns audio to). The file is opened and checked
    at call time, so a missing or corrupt file raises here rather than at the first ``next()``.
    """
    p = _check_path(path, "video")
    container = _open_av(p, "video")
    try:
        stream = _video_stream(container, p)
        stream.thread_type = "AUTO"  # frame threading: decoding is the bottleneck here
    except BaseException:
        container.close()
        raise

    def gen() -> Iterator[np.ndarray]:
        try:
            t0: float | None = None
            for i, frame in enumerate(container.decode(stream)):
                rgb = frame.to_ndarray(format="rgb24")
                if not with_times:
                    yield rgb
                    continue
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else i / _stream_fps(stream)
                t0 = t if t0 is None else t0
                yield t - t0, rgb
        except av.error.FFmpegError as e:
            raise _decode_error(p, "video", e) from e
        finally:
            container.close()

    return gen()


def _align_audio(audio: np.ndarray, a_start: float | None, v_start: float, p: Path) -> np.ndarray:
    """Shift audio so that sample 0 plays with the first video frame."""
    offset = int(round(((a_start if a_start is not None else v_start) - v_start) * SAMPLE_RATE))
    if offset > 0:  # audio starts after the first frame: pad
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    if offset:
        logger.debug("%s: audio offset %+d samples relative to video", p, offset)
    return audio


def read_video_audio(path: PathLike) -> np.ndarray | None:
    """A video's audio track at 16 kHz mono with sample 0 at the first video frame (None if
    the file has no audio). Decodes only the audio and the first video frame."""
    p = _check_path(path, "video")
    container = _open_av(p, "video")
    try:
        vstream = _video_stream(container, p)
        if not container.streams.audio:
            return None
        v_start = None
        try:
            for frame in container.decode(vstream):
                if frame.pts is not None and frame.time_base is not None:
                    v_start = float(frame.pts * frame.time_base)
                break
            container.seek(0)
            audio, a_start = _decode_audio_stream(container, container.streams.audio[0], p, "video", SAMPLE_RATE)
        except av.error.FFmpegError as e:
            raise _decode_error(p, "video", e) from e
    finally:
        container.close()
    return _align_audio(audio, a_start, v_start if v_start is not None else _stream_start(vstream), p)


def read_video(path: PathLike, *, with_audio: bool = True) -> VideoClip:
    """Decode a whole video into memory (frames as RGB uint8 and audio at 16 kHz mono).

    Audio sample 0 is aligned with the first video frame: if the first decoded
    audio frame starts later (or earlier) than the video, zeros are prepended (or
    samples dropped). For files too large for memory use :func:`iter_video_frames`.
    """
    p = _check_path(path, "video")
    container = _open_av(p, "video")
    try:
        vstream = _video_stream(container, p)
        vstream.thread_type = "AUTO"
        fps = _stream_fps(vstream)
        w, h = vstream.codec_context.width, vstream.codec_context.height
        frame_bytes = w * h * 3
        max_frames = MAX_READ_VIDEO_BYTES // frame_bytes
        est = int(vstream.frames or 0) or int(round((_container_seconds(container) or 0) * fps))
        if est > max_frames:
            raise MediaSizeError(
                f"video file {p} has about {est} frames of {w}x{h}; more than read_video holds in memory "
                f"({MAX_READ_VIDEO_BYTES / 1024**3:.0f} GiB) — use iter_video_frames"
            )
        astream = container.streams.audio[0] if (with_audio and container.streams.audio) else None
        col = None
        if astream is not None:
            _check_audio_stream(astream, p, "video")
            col = _AudioCollector(p, "video", SAMPLE_RATE)
        frames: list[np.ndarray] = []
        v_start: float | None = None
        streams = [vstream] + ([astream] if astream is not None else [])
        try:
            # One demux pass over both streams instead of reading the file twice.
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream.type == "video":
                        if v_start is None and frame.pts is not None and frame.time_base is not None:
                            v_start = float(frame.pts * frame.time_base)
                        frames.append(frame.to_ndarray(format="rgb24"))
                        if len(frames) > max_frames:
                            raise MediaSizeError(
                                f"video file {p} has more than {max_frames} frames of {w}x{h}; "
                                "too many for read_video — use iter_video_frames"
                            )
                    else:
                        col.add(frame)  # type: ignore[union-attr]
            audio = None
            if col is not None:
                audio = col.finish(_stream_seconds(astream))
        except av.error.FFmpegError as e:
            raise _decode_error(p, "video", e) from e
    finally:
        container.close()

    if not frames:
        raise CorruptMediaError(f"video file {p} has a video stream but no decodable frames")
    if audio is not None and col is not None:
        audio = _align_audio(audio, col.start, v_start if v_start is not None else _stream_start(vstream), p)
    logger.debug("read_video %s: %d frames at %.3f fps, audio=%s", p, len(frames), fps,
                 None if audio is None else audio.size)
    return VideoClip(frames=np.stack(frames), fps=fps, audio=audio, sample_rate=SAMPLE_RATE)
