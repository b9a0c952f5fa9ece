"""Tests for rtavatar.media: real files generated in tmp_path, decoded with real FFmpeg/Pillow."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from rtavatar import SAMPLES_PER_FRAME
from rtavatar import media
from rtavatar.errors import (
    ChannelLayoutError,
    CorruptMediaError,
    EmptyAudioError,
    MediaError,
    MediaNotFoundError,
    MediaSizeError,
    UnsupportedMediaError,
)
from rtavatar.media import (
    VideoClip,
    iter_video_frames,
    probe_video,
    read_audio,
    read_image,
    read_video,
    validate_audio,
    validate_image,
    write_video,
)

SR = 16_000
N_FRAMES = 37
ONSET_FRAME = 20


def smooth_frames(n: int, h: int = 64, w: int = 64) -> np.ndarray:
    """Smooth moving gradients: easy for H.264, so decoded error stays small."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = 128 + 100 * np.sin((xx + 2 * i) / 10)
        out[i, ..., 1] = 128 + 100 * np.cos((yy - 1.5 * i) / 12)
        out[i, ..., 2] = (xx + yy + 3 * i) % 256 * 0.5 + 60
    return out


def tone_burst(n_samples: int, start: int, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    a = np.zeros(n_samples, np.float32)
    t = np.arange(n_samples - start) / SR
    a[start:] = amp * np.sin(2 * np.pi * freq * t)
    return a


def onset(audio: np.ndarray, thresh: float = 0.1) -> int:
    idx = np.flatnonzero(np.abs(audio) > thresh)
    assert idx.size, "no tone found in decoded audio"
    return int(idx[0])


def peak_hz(audio: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / sr)[np.argmax(spec)])


def raises_naming(exc: type[Exception], path: Path | str, fn, *args, **kwargs) -> Exception:
    """Call fn, expect exc, and check the message names the offending file."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(path) in str(info.value), str(info.value)
    return info.value


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """One 37-frame mp4 with a 1 kHz burst starting exactly at frame 20 (shared: encoding costs time)."""
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    frames = smooth_frames(N_FRAMES)
    audio = tone_burst(N_FRAMES * SAMPLES_PER_FRAME, ONSET_FRAME * SAMPLES_PER_FRAME)
    assert write_video(path, frames, audio) == N_FRAMES
    return path, frames, audio


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vid") / "silent.mp4"
    write_video(path, smooth_frames(5))
    return path


# --------------------------------------------------------------------------- video round trip


def test_video_roundtrip_frames_and_audio_alignment(av_clip):
    path, frames, _ = av_clip
    clip = read_video(path)
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(25.0)
    err = np.abs(clip.frames.astype(np.float32) - frames.astype(np.float32)).mean()
    assert err < 6, err
    # Audio ends with the video (within one frame) ...
    assert clip.sample_rate == SR and clip.audio.dtype == np.float32
    assert abs(clip.audio.size - N_FRAMES * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    # ... and AAC priming did not shift the tone: onset within one frame of frame 20.
    assert abs(onset(clip.audio) - ONSET_FRAME * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert peak_hz(clip.audio[ONSET_FRAME * SAMPLES_PER_FRAME + 640 :]) == pytest.approx(1000, abs=20)


def test_read_video_aligns_audio_that_starts_late(tmp_path):
    """Audio whose first packet is 0.2 s after the first frame must be shifted, not glued to frame 0."""
    path, fps, late = tmp_path / "late.mp4", 25, 5 * SAMPLES_PER_FRAME
    tone = tone_burst(20 * SAMPLES_PER_FRAME, 0)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        aus = c.add_stream("aac", rate=SR)
        aus.layout = "mono"
        for i, frame in enumerate(smooth_frames(25)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        for s in range(0, tone.size, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, late + s, Fraction(1, SR)
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode(None):
            c.mux(p)
    clip = read_video(path)
    assert abs(onset(clip.audio) - late) <= SAMPLES_PER_FRAME
    assert abs(clip.audio.size - (late + tone.size)) <= SAMPLES_PER_FRAME


def test_read_webm_vp9_opus(tmp_path):
    """A webm from elsewhere: VP9 + Opus at 48 kHz (Opus pre-skip must not shift the audio)."""
    if not {"libvpx-vp9", "libopus"} <= set(av.codecs_available):
        pytest.skip("PyAV's bundled FFmpeg lacks libvpx-vp9 or libopus")
    path, sr = tmp_path / "clip.webm", 48_000
    tone = np.zeros(sr * 10 // 25, np.float32)
    tone[sr * 5 // 25 :] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(tone.size - sr * 5 // 25) / sr)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libvpx-vp9", rate=25, options={"deadline": "realtime", "cpu-used": "8"})
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        aus = c.add_stream("libopus", rate=sr)
        aus.layout = "mono"
        for i, frame in enumerate(smooth_frames(10)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        for s in range(0, tone.size, 960):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 960], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = sr, s, Fraction(1, sr)
            for p in aus.encode(af):
                c.mux(p)
        for p in aus.encode(None):
            c.mux(p)
    clip = read_video(path)
    assert clip.frames.shape == (10, 64, 64, 3) and clip.fps == pytest.approx(25.0)
    assert abs(clip.audio.size - 10 * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert abs(onset(clip.audio) - 5 * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert abs(read_audio(path).size - 10 * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME


def test_read_video_without_audio(av_clip, silent_clip):
    assert read_video(av_clip[0], with_audio=False).audio is None
    clip = read_video(silent_clip)
    assert clip.audio is None and clip.frames.shape == (5, 64, 64, 3)


def test_probe_and_iter_video(av_clip):
    path, frames, _ = av_clip
    info = probe_video(path)
    assert info["n_frames"] == N_FRAMES
    assert info["fps"] == pytest.approx(25.0)
    assert (info["width"], info["height"]) == (64, 64)
    assert info["duration"] == pytest.approx(N_FRAMES / 25, abs=0.04)
    assert info["has_audio"] is True
    got = list(iter_video_frames(path))
    assert len(got) == N_FRAMES and got[0].shape == (64, 64, 3) and got[0].dtype == np.uint8
    assert np.abs(got[-1].astype(float) - frames[-1]).mean() < 6


def test_write_video_generator_pads_short_audio(tmp_path):
    path = tmp_path / "gen.mp4"
    short = tone_burst(1000, 0)  # far shorter than 12 frames
    n = write_video(path, (f for f in smooth_frames(12)), short)
    assert n == 12
    clip = read_video(path)
    assert clip.frames.shape[0] == 12
    assert abs(clip.audio.size - 12 * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert np.abs(clip.audio[3000:]).max() < 0.05  # the padding is silence


def test_write_video_trims_long_audio_and_reads_audio_track(tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, smooth_frames(10), tone_burst(SR * 2, 0, freq=440.0))  # 2 s audio, 0.4 s video
    audio = read_audio(path)
    assert abs(audio.size - 10 * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert peak_hz(audio) == pytest.approx(440, abs=30)


def test_write_video_pads_odd_size_for_yuv420p(tmp_path):
    frames = smooth_frames(3, h=33, w=45)
    path = tmp_path / "odd.mp4"
    write_video(path, list(frames))
    clip = read_video(path)
    assert clip.frames.shape == (3, 34, 46, 3)
    # The padding repeats the edge.
    assert np.abs(clip.frames[:, 33].astype(float) - clip.frames[:, 32]).mean() < 6
    assert np.abs(clip.frames[:, :33, :45].astype(float) - frames).mean() < 6


def test_write_video_yuv444_low_crf_is_near_lossless(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 32, 48, 3), dtype=np.uint8)  # noise: chroma subsampling would wreck it
    path = tmp_path / "fine.mkv"
    write_video(path, frames, pix_fmt="yuv444p", crf=0, fps=Fraction(30000, 1001))
    clip = read_video(path)
    assert clip.frames.shape == frames.shape
    assert clip.fps == pytest.approx(29.97, abs=0.01)
    # Only the RGB<->YUV conversion rounding remains.
    assert np.abs(clip.frames.astype(float) - frames).mean() < 2.5
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"


def test_write_video_errors_leave_no_files(tmp_path):
    out = tmp_path / "bad.mp4"
    raises_naming(MediaSizeError, out, write_video, out, [])
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((32, 34, 3), np.uint8)]
    raises_naming(MediaSizeError, out, write_video, out, frames)
    raises_naming(ChannelLayoutError, out, write_video, out, [np.zeros((32, 32, 4), np.uint8)])
    raises_naming(ChannelLayoutError, out, write_video, out, [np.zeros((32, 32, 3), np.float32)])
    raises_naming(UnsupportedMediaError, tmp_path / "x.webm", write_video, tmp_path / "x.webm", smooth_frames(2))
    assert list(tmp_path.iterdir()) == []  # no temp files or partial outputs


def test_write_video_failure_keeps_previous_file(tmp_path):
    out = tmp_path / "keep.mp4"
    write_video(out, smooth_frames(2))
    before = out.read_bytes()

    def frames():
        yield np.zeros((64, 64, 3), np.uint8)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(out, frames())
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


# --------------------------------------------------------------------------- read_audio


def test_read_audio_wav_resamples_and_downmixes(tmp_path):
    sr, dur = 44_100, 1.5
    t = np.arange(int(sr * dur)) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - int(SR * dur)) <= SR // 1000  # within 1 ms
    assert peak_hz(audio) == pytest.approx(440, abs=2)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)
    assert read_audio(path, sample_rate=8000).size == pytest.approx(8000 * dur, abs=8)


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_read_audio_soundfile_formats(tmp_path, fmt):
    sr, dur = 22_050, 1.0
    t = np.arange(int(sr * dur)) / sr
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, (0.4 * np.sin(2 * np.pi * 600 * t)).astype(np.float32), sr)
    audio = read_audio(path)
    assert abs(audio.size - SR) <= 16
    assert peak_hz(audio) == pytest.approx(600, abs=3)


def _encode_audio_with_pyav(path: Path, codec: str, audio: np.ndarray, sr: int, fmt: str | None = None) -> None:
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono"
        for i in range(0, audio.size, 1152):
            f = av.AudioFrame.from_ndarray(audio[None, i : i + 1152], format="fltp", layout="mono")
            f.sample_rate, f.pts = sr, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_read_audio_mp3(tmp_path):
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("PyAV's bundled FFmpeg has no MP3 encoder (libmp3lame)")
    sr = 24_000
    t = np.arange(sr) / sr
    path = tmp_path / "tone.mp3"
    _encode_audio_with_pyav(path, "libmp3lame", (0.4 * np.sin(2 * np.pi * 700 * t)).astype(np.float32), sr)
    audio = read_audio(path)
    # The LAME header records encoder delay/padding; allow one video frame of slack anyway.
    assert abs(audio.size - SR) <= SAMPLES_PER_FRAME
    assert peak_hz(audio) == pytest.approx(700, abs=3)


def test_read_audio_m4a(tmp_path):
    t = np.arange(SR) / SR
    path = tmp_path / "tone.m4a"
    _encode_audio_with_pyav(path, "aac", (0.4 * np.sin(2 * np.pi * 900 * t)).astype(np.float32), SR, fmt="ipod")
    audio = read_audio(path)
    assert abs(audio.size - SR) <= 16
    assert peak_hz(audio) == pytest.approx(900, abs=3)


def test_read_audio_from_video_track(av_clip):
    path, _, _ = av_clip
    audio = read_audio(path)
    assert abs(audio.size - N_FRAMES * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    assert abs(onset(audio) - ONSET_FRAME * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME


# --------------------------------------------------------------------------- bad inputs


def test_missing_files(tmp_path):
    for fn, name in [(read_audio, "a.wav"), (read_image, "a.png"), (read_video, "a.mp4"),
                     (probe_video, "b.mp4"), (iter_video_frames, "c.mp4")]:
        e = raises_naming(MediaNotFoundError, tmp_path / name, fn, tmp_path / name)
        assert isinstance(e, FileNotFoundError) and isinstance(e, MediaError)


def test_directory_is_unsupported(tmp_path):
    raises_naming(UnsupportedMediaError, tmp_path, read_audio, tmp_path)
    raises_naming(UnsupportedMediaError, tmp_path, read_image, tmp_path)


def test_random_bytes_wav_is_corrupt(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        path = tmp_path / f"noise{i}.wav"
        path.write_bytes(rng.bytes(4000))
        raises_naming(CorruptMediaError, path, read_audio, path)


def test_text_named_mp4_is_corrupt(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a shopping list, not a video\n" * 20)
    raises_naming(CorruptMediaError, path, read_video, path)
    raises_naming(CorruptMediaError, path, read_audio, path)
    raises_naming(CorruptMediaError, path, probe_video, path)


def test_zero_length_wav_is_empty(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    raises_naming(EmptyAudioError, path, read_audio, path)


def test_video_without_audio_to_read_audio(silent_clip):
    raises_naming(UnsupportedMediaError, silent_clip, read_audio, silent_clip)


def test_audio_file_to_read_video(tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, np.zeros(1600, np.float32), SR)
    raises_naming(UnsupportedMediaError, path, read_video, path)


def test_nine_channel_wav(tmp_path):
    path = tmp_path / "nine.wav"
    sf.write(path, np.random.default_rng(2).standard_normal((1600, 9)).astype(np.float32) * 0.1, SR)
    raises_naming(ChannelLayoutError, path, read_audio, path)


def test_audio_longer_than_limit(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(SR * 2, np.float32), SR)
    monkeypatch.setattr(media, "MAX_AUDIO_SECONDS", 1.0)
    raises_naming(MediaSizeError, path, read_audio, path)


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raises_naming(CorruptMediaError, bad, read_image, bad)
    text = tmp_path / "fake.jpg"
    text.write_text("not a jpeg")
    raises_naming(CorruptMediaError, text, read_image, text)


def _png_claiming(path: Path, w: int, h: int) -> None:
    """A tiny PNG whose IHDR claims w x h (CRC fixed so only the size is wrong)."""
    Image.new("L", (1, 1)).save(path)
    buf = bytearray(path.read_bytes())
    ihdr = buf.index(b"IHDR")
    buf[ihdr + 4 : ihdr + 12] = struct.pack(">II", w, h)
    crc = zlib.crc32(bytes(buf[ihdr : ihdr + 4 + 13])) & 0xFFFFFFFF
    buf[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(buf))


def test_image_size_limits(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_claiming(bomb, 20000, 20000)
    raises_naming(MediaSizeError, bomb, read_image, bomb)
    wide = tmp_path / "wide.png"
    Image.new("L", (9000, 40)).save(wide)
    raises_naming(MediaSizeError, wide, read_image, wide)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    raises_naming(MediaSizeError, tiny, read_image, tiny)
    assert read_image(tiny, min_size=8).shape == (8, 8, 3)


def test_validate_audio_errors():
    x = np.zeros(1600, np.float32)
    e = raises_naming(UnsupportedMediaError, "<array>", validate_audio, x, 44_100)
    assert "44100" in str(e) and "16000" in str(e)
    bad = x.copy()
    bad[5] = np.nan
    raises_naming(CorruptMediaError, "<array>", validate_audio, bad, SR)
    raises_naming(CorruptMediaError, "clip.npy", validate_audio, np.full(10, np.inf), SR, name="clip.npy")
    raises_naming(ChannelLayoutError, "<array>", validate_audio, np.zeros((2, 3, 100), np.float32), SR)
    raises_naming(ChannelLayoutError, "<array>", validate_audio, np.zeros((100, 9), np.float32), SR)
    raises_naming(EmptyAudioError, "<array>", validate_audio, np.zeros(0, np.float32), SR)


def test_validate_audio_layouts_and_dtypes():
    a = np.arange(-500, 500, dtype=np.int16) * 30
    out = validate_audio(a, SR)
    assert out.dtype == np.float32 and np.allclose(out, a / 32768.0)
    st = np.stack([np.full(1000, 0.2), np.full(1000, 0.4)], axis=1)  # (n, C)
    assert np.allclose(validate_audio(st, SR), 0.3)
    assert np.allclose(validate_audio(st.T, SR), 0.3)  # (C, n)
    assert validate_audio(st.T, SR).shape == (1000,)


# --------------------------------------------------------------------------- read_image / validate_image


@pytest.mark.parametrize("ext,tol", [("png", 0), ("bmp", 0), ("jpg", 12), ("webp", 12)])
def test_read_image_formats(tmp_path, ext, tol):
    yy, xx = np.mgrid[0:48, 0:40]
    arr = np.stack([xx * 5, yy * 4, (xx + yy) * 2], axis=2).astype(np.uint8)
    path = tmp_path / f"img.{ext}"
    try:
        Image.fromarray(arr).save(path, **({"quality": 95} if ext in ("jpg", "webp") else {}))
    except (KeyError, OSError) as e:  # pragma: no cover - Pillow built without webp
        pytest.skip(f"Pillow cannot write {ext}: {e}")
    out = read_image(path)
    assert out.shape == (48, 40, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr).mean() <= tol


def test_read_image_rgba_on_white_and_grey(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # right half opaque red, left half fully transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = read_image(path)
    assert (out[:, :20] == 255).all()
    assert (out[:, 20:] == [200, 0, 0]).all()
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 40), 77, np.uint8), "L").save(grey)
    g = read_image(grey)
    assert g.shape == (40, 40, 3) and (g == 77).all()


def test_read_image_16bit_grey_is_scaled(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((40, 40), 65535 // 2, np.uint16)).save(path)
    out = read_image(path)
    assert out.shape == (40, 40, 3) and abs(int(out[0, 0, 0]) - 127) <= 1


def test_read_image_applies_exif_orientation(tmp_path):
    arr = np.zeros((40, 64, 3), np.uint8)  # landscape, bright left edge
    arr[:, :8] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (64, 40, 3)
    assert out[:8].mean() > 200 and out[-8:].mean() < 50  # left edge is now the top


def test_validate_image():
    grey = np.full((40, 50), 9, np.uint8)
    assert validate_image(grey).shape == (40, 50, 3)
    rgba = np.zeros((40, 50, 4), np.uint8)
    assert (validate_image(rgba) == 255).all()
    rgb = np.ones((40, 50, 3), np.uint8)
    assert np.array_equal(validate_image(rgb), rgb)
    raises_naming(UnsupportedMediaError, "<array>", validate_image, rgb.astype(np.float32))
    raises_naming(ChannelLayoutError, "<array>", validate_image, np.zeros((40, 50, 2), np.uint8))
    raises_naming(MediaSizeError, "face", validate_image, np.zeros((8, 8, 3), np.uint8), name="face")
    raises_naming(MediaSizeError, "<array>", validate_image, np.zeros((9000, 40), np.uint8))
