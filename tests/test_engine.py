"""The real-time engine: inference layer, Avatar / Session, streaming audio, schedule,
pipeline, precision, alignment and paste-back. Random small weights unless a trained run
matters (the frames are noise, but every behaviour below is exact)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtavatar import SAMPLES_PER_FRAME
from rtavatar.checkpoints import load_bundle, random_bundle
from rtavatar.diffusion import alpha_sigma, consistency_denoiser, sample_consistency
from rtavatar.engine import Avatar, ChunkSchedule
from rtavatar.engine.audio import StreamingAudio
from rtavatar.errors import RTAvatarError
from rtavatar.models.avatarnet import AvatarNetConfig
from rtavatar.models.conditioning import STATE_ID, StateTracker
from rtavatar.photo.options import PasteOptions

PHOTO = Path(__file__).parent / "assets" / "photo_cc0.jpg"
LISA = Path(__file__).parents[1] / "src" / "rtavatar" / "assets" / "portraits" / "lisa.jpg"


def small_net() -> AvatarNetConfig:
    cfg = AvatarNetConfig()
    cfg.dit.latent_size, cfg.dit.dim, cfg.dit.depth, cfg.dit.heads, cfg.dit.audio_dim, cfg.dit.audio_adaln = 8, 48, 2, 4, 32, True
    cfg.audio.dim, cfg.audio.hidden = 32, 32
    return cfg


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6))


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts with pauses: voiced and silent stretches."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = (np.sin(2 * np.pi * 1.3 * t) > 0.2).astype(np.float32) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    return (0.3 * env * np.sin(2 * np.pi * (150 + 80 * np.sin(2 * np.pi * 3 * t)) * t) + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def face(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def run(avatar: Avatar, pushes: list[np.ndarray], **kw) -> list:  # noqa: ANN003
    s = avatar.session(face(), align="center", **kw)
    for p in pushes:
        s.push_audio(p)
    s.close()
    return list(s.frames(timeout=120))


# ---------------------------------------------------------------------------- inference layer
def test_engine_imports_no_training_or_synthetic_generator_module() -> None:
    """The engine and the photo renderer run with the synthetic-data package, training and
    evaluation unimportable (issue 29): a live session on an aligned face crop, and one on the
    bundled photo in every paste mode (warp with an aperture head, so that the renderer reads
    the openings from the latents), each frame at the photo's own size (dlib is a core dependency)."""
    code = r"""
import sys, importlib.abc
BLOCKED = ("rtavatar.data", "rtavatar.training", "rtavatar.evaluation")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import numpy as np
import rtavatar.engine, rtavatar.engine.files, rtavatar.commands.generate, rtavatar.checkpoints
from rtavatar import Avatar
from rtavatar.checkpoints import random_bundle
from rtavatar.media import read_image
from rtavatar.models.avatarnet import AvatarNetConfig
from rtavatar.models.syncnet import ApertureHead, SyncNetConfig
from rtavatar.photo.options import PASTE_MODES, PasteOptions
cfg = AvatarNetConfig(); cfg.dit.latent_size, cfg.dit.dim, cfg.dit.depth, cfg.dit.audio_dim = 8, 32, 1, 32
cfg.audio.dim = cfg.audio.hidden = 32
bundle = random_bundle(cfg, vae_channels=8)
avatar = Avatar(bundle)
s = avatar.session(np.zeros((32, 32, 3), np.uint8), align="center")
s.push_audio(np.zeros(3000, np.float32)); s.close()
counts = [len(list(s.frames(timeout=60)))]
bundle.reader = ApertureHead(SyncNetConfig()).eval().requires_grad_(False)  # random: the latent reader path runs
photo = read_image(sys.argv[1])
audio = 0.3 * np.sin(np.arange(3000) / 16000 * 2 * np.pi * 180).astype(np.float32)
readers = {}
for mode in PASTE_MODES:
    s = avatar.session(sys.argv[1], align="face", paste=PasteOptions(mode=mode))
    mouth = getattr(s.renderer, "mouth", None)
    readers[mode] = type(getattr(mouth, "reader", None)).__name__
    s.push_audio(audio); s.close()
    frames = list(s.frames(timeout=60))
    assert all(f.image.shape == photo.shape for f in frames), (mode, photo.shape, [f.image.shape for f in frames])
    counts.append(len(frames))
print(counts, readers, sorted(m for m in sys.modules if m.startswith("rtavatar.")))
"""
    out = subprocess.run([sys.executable, "-c", code, str(LISA)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("[5, 5, 5, 5] "), out.stdout
    assert "'warp': 'LatentMouthReader'" in out.stdout, out.stdout  # warp decoded no face to read the openings
    assert "rtavatar.data" not in out.stdout and "rtavatar.training" not in out.stdout, out.stdout


def test_teacher_checkpoint_is_self_contained(data_and_vae: tuple[Path, Path], tmp_path: Path) -> None:
    """A new run's checkpoint carries its VAE: it loads with the VAE run gone, and generates
    the same frames as with it."""
    import shutil

    from helpers import tiny_teacher_cfg
    from rtavatar.training.teacher import train_teacher

    data, vae = data_and_vae
    vae_copy = tmp_path / "vae"
    shutil.copytree(vae, vae_copy)
    train_teacher(tiny_teacher_cfg(vae_copy, steps=2), data, tmp_path / "teacher")
    before = Avatar.load(tmp_path / "teacher").generate(face(), speech(0.5), align="center", steps=2)
    shutil.rmtree(vae_copy)
    bundle = load_bundle(tmp_path / "teacher")
    assert bundle.cfg.stage == "teacher" and bundle.cfg.sampling.sampler == "ddim" and bundle.resolution == 64
    after = Avatar(bundle).generate(face(), speech(0.5), align="center", steps=2)
    assert np.array_equal(before, after)


def test_consistency_sampling_renoises_between_steps_and_context_stays_at_t0() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 5, 4, 2, 2, generator=g)
    x = torch.randn(1, 5, 4, 2, 2, generator=g)
    active = torch.tensor([[False, False, True, True, True]])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def den(x_: torch.Tensor, t: torch.Tensor, c: object) -> torch.Tensor:
        seen.append((x_.clone(), t.clone()))
        return target.expand_as(x_)

    out = sample_consistency(consistency_denoiser(den), x, active, None, steps=4, generator=torch.Generator().manual_seed(5))
    assert len(seen) == 4
    for xi, ti in seen:
        assert torch.all(ti[:, :2] == 0), "context frames reach the network at t = 0"
        assert torch.equal(xi[:, :2], x[:, :2]), "...and clean"
    prev = out.new_zeros(0)
    for i in range(1, 4):
        xi, ti = seen[i]
        t = float(ti[0, 2])
        a, s = alpha_sigma(torch.tensor(t))
        # The input of step i is the previous step's x0 re-noised to t with *fresh* noise.
        x0_prev = consistency_denoiser(lambda *_: target)(seen[i - 1][0], seen[i - 1][1], None)
        eps = (xi[:, 2:] - a * x0_prev[:, 2:]) / s
        assert 0.6 < float(eps.std()) < 1.5, f"step {i}: the input is x0 re-noised to t={t:.2f}"
        assert not torch.equal(eps, prev), "fresh noise each step"
        prev = eps


# ---------------------------------------------------------------------------- streaming audio
def test_streaming_features_equal_the_offline_encoder(avatar: Avatar) -> None:
    net = avatar.bundle.net
    audio = speech(2.0, seed=3)
    n = len(audio) // SAMPLES_PER_FRAME
    m = net.cfg.audio_margin
    offline = net.audio_tokens(torch.from_numpy(np.pad(audio, (m * 640, m * 640)))[None], n)
    stream = StreamingAudio(net)
    got, done, rng = [], 0, np.random.default_rng(0)
    pos = 0
    while pos < len(audio):
        k = int(rng.integers(1, 3000))
        stream.append(audio[pos : pos + k])
        pos += k
        ready = stream.ready_frames()
        if ready > done:
            got.append(stream.tokens(done, ready))
            stream.forget_before(ready)
            done = ready
    stream.append(np.zeros(m * 640, np.float32))  # the end: silence after, as offline pads
    got.append(stream.tokens(done, n))
    torch.testing.assert_close(torch.cat(got, 1), offline, rtol=0, atol=1e-5)
    assert 100 < stream.lookahead_ms < 120, "W = 2 frames (80 ms) + the encoder's 27.5 ms"


def test_state_tracker_is_causal_and_holds_short_pauses() -> None:
    voiced = 0.3 * np.sin(np.arange(640) / 3).astype(np.float32)
    silent = np.zeros(640, np.float32)
    tr = StateTracker(hold=3)
    states = [tr.update(a) for a in [voiced] * 4 + [silent] * 6]
    assert states == [STATE_ID["speak"]] * 7 + [STATE_ID["idle"]] * 3
    tr.reset("listen")
    assert tr.update(silent) == STATE_ID["listen"]


# ---------------------------------------------------------------------------- sessions
def test_frames_cover_the_audio_with_monotonic_timestamps(avatar: Avatar) -> None:
    audio = speech(1.5)
    frames = run(avatar, [audio])
    n = int(np.ceil(len(audio) / 640))
    assert [f.index for f in frames] == list(range(n))
    assert all(f.pts == pytest.approx(f.index / 25) for f in frames)
    assert np.array_equal(np.concatenate([f.audio for f in frames])[: len(audio)], audio), "each frame carries its audio"
    assert frames[0].image.shape == (64, 64, 3) and frames[0].image.std() > 5


def test_any_push_chunking_gives_the_frames_of_one_push(avatar: Avatar) -> None:
    audio = speech(1.6, seed=1)
    whole = run(avatar, [audio], seed=4)
    cuts = np.sort(np.random.default_rng(2).integers(0, len(audio), 25))
    pieces = run(avatar, np.split(audio, cuts), seed=4)
    int16 = run(avatar, [(np.clip(audio, -1, 1) * 32767).astype(np.int16)], seed=4)
    assert len(whole) == len(pieces) == 40
    assert all(np.array_equal(a.image, b.image) for a, b in zip(whole, pieces))
    assert np.mean([np.abs(a.image.astype(int) - b.image).mean() for a, b in zip(whole, int16)]) < 1.0, "int16 in: same up to rounding"


def test_pipelined_and_sequential_give_identical_frames(avatar: Avatar) -> None:
    audio = speech(1.2, seed=2)
    a, b = run(avatar, [audio], pipeline=True), run(avatar, [audio], pipeline=False)
    assert len(a) == len(b) == 30 and all(np.array_equal(x.image, y.image) for x, y in zip(a, b))


def test_sessions_sharing_one_avatar_run_concurrently_and_match_their_solo_runs(avatar: Avatar) -> None:
    a_audio, b_audio = speech(1.0, seed=7), speech(0.8, seed=8)
    solo_a, solo_b = run(avatar, [a_audio], seed=1), run(avatar, [b_audio], seed=2)
    sa = avatar.session(face(), align="center", seed=1)
    sb = avatar.session(face(1), align="center", seed=2)
    for i in range(0, 16000, 1600):  # interleaved pushes into both
        sa.push_audio(a_audio[i : i + 1600])
        sb.push_audio(b_audio[i : i + 1600])
    sa.close()
    sb.close()
    got_b = list(sb.frames(timeout=60))
    got_a = list(sa.frames(timeout=60))
    assert len(got_a) == len(solo_a) == 25 and len(got_b) == 20
    assert all(np.array_equal(x.image, y.image) for x, y in zip(got_a, solo_a))
    assert not np.array_equal(got_b[0].image, solo_b[0].image), "other portrait, other frames"
    solo_b1 = avatar.session(face(1), align="center", seed=2)
    solo_b1.push_audio(b_audio)
    solo_b1.close()
    assert all(np.array_equal(x.image, y.image) for x, y in zip(got_b, solo_b1.frames(timeout=60)))


def test_chunk_schedule_starts_short_and_grows(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center", schedule=ChunkSchedule(first=1, growth=(2, 4)))
    s.push_audio(speech(2.0))
    s.close()
    list(s.frames(timeout=60))
    assert s.times.chunks[:4] == [1, 2, 4, 6] and set(s.times.chunks[3:-1]) == {6}
    # The trace follows each chunk through the stages, in order, frame ranges back to back.
    trace = list(s.trace)
    assert [c["new"] for c in trace] == s.times.chunks and [c["start"] for c in trace] == list(np.cumsum([0, *s.times.chunks[:-1]]))
    assert all(c["plan"] <= c["features"] <= c["denoise"] <= c["denoised"] <= c["decoded"] for c in trace)
    with pytest.raises(RTAvatarError, match=r"must lie in \[1, 6\]"):
        avatar.session(face(), align="center", schedule=ChunkSchedule(first=1, growth=(12,)))


def test_empty_tiny_and_long_pushes(avatar: Avatar) -> None:
    assert run(avatar, [np.zeros(0, np.float32)]) == []
    one = run(avatar, [np.zeros(0, np.float32), np.array([0.1], np.float32)])
    assert len(one) == 1 and one[0].audio[0] == pytest.approx(0.1) and not one[0].audio[1:].any()
    s = avatar.session(face(), align="center", buffer=8)  # 60 s, read while it is made: memory stays bounded
    s.push_audio(np.tile(speech(2.0), 30))
    s.close()
    count = sum(1 for _ in s.frames(timeout=120))
    assert count == 1500
    with pytest.raises(RTAvatarError, match="closed"):
        s.push_audio(np.zeros(10, np.float32))


@pytest.mark.parametrize("bad, match", [(np.zeros((2, 100), np.float32), "mono"), (np.array([np.nan], np.float32), "NaN"),
                                        (np.zeros(10, np.int32), "float32 or int16"), (b"\x00\x01\x02", "even byte count")])
def test_bad_audio_is_refused_clearly(avatar: Avatar, bad: object, match: str) -> None:
    s = avatar.session(face(), align="center")
    with pytest.raises(RTAvatarError, match=match):
        s.push_audio(bad)  # type: ignore[arg-type]
    s.close()


def test_other_sample_rates_are_resampled(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center")
    s.push_audio(np.zeros(48000, np.float32), sample_rate=48000)  # 1 s at 48 kHz -> 25 frames
    with pytest.raises(RTAvatarError, match="sample rate"):
        s.push_audio(np.zeros(100, np.float32), sample_rate=100)
    s.close()
    assert len(list(s.frames(timeout=60))) == 25


def test_state_and_expression_changes_take_effect_within_one_chunk(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center", state="speak", pipeline=False)
    s.push_audio(speech(0.8))
    s.flush()
    first = [f for _, f in zip(range(20), s.frames(timeout=60))]
    s.set_state("listen")
    s.set_expression(smile=0.9, yaw=20)
    s.push_audio(speech(0.8))
    s.close()
    rest = list(s.frames(timeout=60))
    assert {f.state for f in first} == {"speak"} and {f.state for f in rest} == {"listen"}
    # Same audio, same seed, but the controls changed: the new chunk's frames differ.
    base = avatar.session(face(), align="center", state="listen", pipeline=False)
    base.push_audio(speech(0.8))
    base.flush()
    list(zip(range(20), base.frames(timeout=60)))
    base.push_audio(speech(0.8))
    base.close()
    same_expr = list(base.frames(timeout=60))
    assert len(same_expr) == len(rest) == 20
    assert not np.array_equal(same_expr[0].image, rest[0].image), "the first frame after set_expression shows it"


def test_idle_chunk_cap_keeps_quiet_chunks_short_and_speech_chunks_long(avatar: Avatar) -> None:
    """ChunkSchedule(idle=2): while the face is not speaking no chunk exceeds 2 frames (speech
    arriving then waits behind at most 2), speech chunks still grow to the steady length."""
    quiet, talk = np.zeros(16000, np.float32), 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32)
    s = avatar.session(face(), align="center", schedule=ChunkSchedule(idle=2), pipeline=False)
    s.push_audio(np.concatenate([quiet, talk, quiet]))
    s.close()
    states = [f.state for f in s.frames(timeout=120)]
    chunks, at = [], 0
    for n in s.times.chunks:
        chunks.append((n, states[at]))
        at += n
    assert at == len(states) == 75
    assert max(n for n, st in chunks if st != "speak") <= 2
    assert max(n for n, st in chunks if st == "speak") == 6  # the steady length (max_new)
    with pytest.raises(RTAvatarError):
        avatar.session(face(), align="center", schedule=ChunkSchedule(idle=7))  # longer than the model's chunks


def test_interrupt_drops_queued_frames_and_listens_within_one_chunk(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center")
    s.push_audio(speech(4.0))
    it = s.frames(timeout=60)
    shown = [next(it) for _ in range(12)]
    s.interrupt()
    s.push_audio(np.zeros(640 * 10, np.float32))  # the user talks; the avatar's audio is silence
    s.close()
    after = list(it)
    assert [f.index for f in shown] == list(range(12))
    assert [f.index for f in after] == list(range(12, 22)), "the rest of the speech was dropped, time continues"
    assert {f.state for f in after} == {"listen"}
    assert not any(f.audio.any() for f in after)


def test_live_session_keeps_producing_idle_frames_without_audio(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center", live=True)
    it = s.frames(timeout=30)
    frames = [next(it) for _ in range(15)]  # no audio pushed at all
    s.push_audio(speech(0.4))
    more = [next(it) for _ in range(30)]
    s.close()
    assert [f.index for f in frames + more] == list(range(45))
    assert {f.state for f in frames} == {"idle"} and "speak" in {f.state for f in more}


def test_int8_and_bf16_frames_stay_near_fp32() -> None:
    audio = speech(1.0, seed=5)
    frames = {}
    for prec in ("fp32", "int8", "bf16"):
        a = Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6), precision=prec)
        frames[prec] = a.generate(face(), audio, align="center").astype(np.float32)
    for prec, tol in (("int8", 6.0), ("bf16", 6.0)):
        err = np.abs(frames[prec] - frames["fp32"]).mean()
        assert err < tol, f"{prec}: mean abs difference {err:.2f} / 255"
        assert err > 0, f"{prec} changed nothing: not applied"


def test_auto_precision_follows_the_device() -> None:
    """auto: INT8 denoiser on a CPU, the bf16 decoder only with AMX (slower without it,
    docs/BENCHMARKS.md), bf16 on a GPU; an Avatar reports what it resolved to."""
    from rtavatar.engine.quantize import auto_precision

    assert auto_precision("cpu", {"avx512f", "avx512_bf16"}) == "int8"
    assert auto_precision("cpu", {"avx512_bf16", "amx_bf16", "amx_tile"}) == "int8+bf16"
    assert auto_precision("cuda") == "bf16"
    a = Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6), precision="auto")
    assert a.precision == auto_precision("cpu") and a.precision.startswith("int8")
    with pytest.raises(RTAvatarError, match="unknown precision"):
        Avatar(random_bundle(small_net(), vae_channels=8, seed=1, max_new=6), precision="fp8")


# ---------------------------------------------------------------------------- portraits
def test_photo_is_aligned_and_pasted_back_at_its_own_size(avatar: Avatar) -> None:
    pytest.importorskip("dlib")
    p = avatar.portrait(PHOTO)
    x0, y0, side = p.box
    assert p.face.shape == (64, 64, 3) and p.faces_found == 1
    assert 100 < side < 300 and 0 < x0 < 150 and 50 < y0 < 200, p.box
    out = avatar.generate(PHOTO, speech(0.3), paste=PasteOptions(mode="face"))
    assert out.shape == (8, 400, 300, 3)
    inside = np.zeros((400, 300), bool)
    inside[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = True
    assert np.array_equal(out[0][~inside], p.image[~inside]), "untouched outside the face box"
    assert np.abs(out[0][inside].astype(int) - p.image[inside]).mean() > 5, "the generated face is composited in"
    # The photo composite: only the lower face is the model's; the eyes stay the photo's.
    photo = avatar.generate(PHOTO, speech(0.3), paste=PasteOptions(mode="photo", head_motion=0))
    assert photo.shape == (8, 400, 300, 3)
    nose = int(p.landmarks[30, 1])
    assert np.array_equal(photo[:, : nose - side // 20], np.broadcast_to(p.image[: nose - side // 20], photo[:, : nose - side // 20].shape))
    from rtavatar import SAMPLES_PER_FRAME
    from rtavatar.models.conditioning import STATES, offline_states
    from rtavatar.photo.compose import PhotoCompositor, WarpedMouth, make_renderer, render_one
    from rtavatar.photo.options import DEFAULT_PASTE_MODE
    from rtavatar.photo.readers import MouthReader

    audio = speech(0.3)
    raw = avatar.generate(PHOTO, audio)
    cs = avatar.sampler()
    recon = cs.reconstruction(cs.reference(p.face))
    paste = make_renderer(p, PasteOptions(mode="photo", head_motion=0), recon)
    assert np.array_equal(photo, np.stack([render_one(paste, f, index=i) for i, f in enumerate(raw)]))
    # The default (warp): the same frames through the lip warp (its head sways more where the frames speak).
    states = offline_states(np.pad(audio, (0, len(raw) * SAMPLES_PER_FRAME - len(audio))), len(raw), "auto")
    default = avatar.generate(PHOTO, audio, paste=True)
    warp = make_renderer(p, PasteOptions(), recon, gain=avatar.bundle.cfg.warp_gain)
    assert DEFAULT_PASTE_MODE == "warp" and isinstance(warp, PhotoCompositor) and isinstance(warp.mouth, WarpedMouth)
    assert isinstance(warp.mouth.reader, MouthReader)  # a model without an aperture head: read off the decoded face
    assert np.array_equal(default, np.stack([render_one(warp, f, index=i, state=STATES[int(states[i])])
                                             for i, f in enumerate(raw)]))


def test_small_picture_is_enlarged_so_the_output_is_never_a_thumbnail(avatar: Avatar) -> None:
    """A 150 px thumbnail comes out at 256 px on its shorter side, same framing, face found."""
    pytest.importorskip("dlib")
    from PIL import Image

    from rtavatar.photo.align import MIN_PICTURE, center_crop

    small = np.asarray(Image.open(PHOTO).convert("RGB").resize((150, 200), Image.LANCZOS))
    p = avatar.portrait(small)
    assert MIN_PICTURE == 256 and p.image.shape == (341, 256, 3) and p.faces_found == 1
    out = avatar.generate(small, speech(0.3), paste=True)
    assert out.shape == (8, 341, 256, 3)
    big = avatar.portrait(PHOTO)
    assert big.image.shape == (400, 300, 3), "a picture of 256 px and more keeps its own size"
    crop = face(3)  # a face crop at the model's size: what the model sees stays bit-exact
    c = avatar.portrait(crop, align="center")
    assert np.array_equal(c.face, center_crop(crop, 64)) and c.image.shape == (256, 256, 3) and c.box == (0, 0, 256)


def test_portrait_without_a_face_is_refused_clearly(avatar: Avatar) -> None:
    pytest.importorskip("dlib")
    sky = np.full((200, 200, 3), (120, 170, 230), np.uint8)
    with pytest.raises(RTAvatarError, match="no face found"):
        avatar.session(sky)
    with pytest.raises(RTAvatarError, match="unknown align"):
        avatar.portrait(sky, align="tight")


# ---------------------------------------------------------------------------- CLI: bench, export-onnx
def test_bench_prints_one_json_object_with_the_contract_keys() -> None:
    import json

    out = subprocess.run([sys.executable, "-m", "rtavatar", "bench", "--steps", "1", "--seconds", "1.5", "--photo",
                          "--paste-mode", "warp", "--keep-parted-lips", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("fps", "first_frame_ms", "rtf", "peak_rss_mb", "steps", "resolution", "device", "stage_ms_per_frame"):
        assert key in res, key
    assert res["steps"] == 1 and res["resolution"] == 128 and res["frames"] == res["frames_live"] == 38
    assert res["fps"] > 0 and 0 < res["first_frame_ms"] < 5000 and res["peak_rss_mb"] > 100
    assert res["model"].startswith("shipped")  # no --checkpoint / --config: the model in the package
    assert res["photo"]["paste"]["mode"] == "warp" and res["photo"]["size"] == [300, 400]  # the bundled sample photo
    assert res["photo"]["paste"]["close_lips"] is False


def test_onnx_export_matches_torch_and_runs_a_session(student_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rtavatar.cli import main
    from rtavatar.engine.onnx import use_onnxruntime

    assert main(["export-onnx", "--checkpoint", str(student_run), "--out", str(tmp_path / "onnx"), "--json"]) == 0
    import json

    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["denoiser_max_abs_diff"] < 1e-4 and report["decoder_max_abs_diff"] < 1e-4
    audio = speech(0.6)
    torch_frames = Avatar.load(student_run).generate(face(), audio, align="center")
    ort = Avatar.load(student_run)
    use_onnxruntime(ort, tmp_path / "onnx")
    ort_frames = ort.generate(face(), audio, align="center")
    assert ort_frames.shape == torch_frames.shape
    assert np.abs(ort_frames.astype(int) - torch_frames).max() <= 2


def test_cancel_stops_a_session_nobody_reads(avatar: Avatar) -> None:
    s = avatar.session(face(), align="center", buffer=4)
    s.push_audio(speech(3.0))  # far more than the buffer: the stages block on the reader
    next(s.frames(timeout=60))
    s.cancel()
    s.join(timeout=30)
    assert not any(t.is_alive() for t in s._threads), "every stage ended"
    assert list(s.frames(timeout=5)) == []


def test_exit_hook_stops_sessions_left_running(avatar: Avatar) -> None:
    """A script that exits with a session still generating must not leave a daemon stage thread
    inside a torch op while the interpreter finalizes (that aborts the process): the exit hook
    ends and joins every live session."""
    from rtavatar.engine import session as session_module

    s = avatar.session(face(), align="center", buffer=4)
    s.push_audio(speech(3.0))
    next(s.frames(timeout=60))
    assert s in session_module._LIVE and any(t.is_alive() for t in s._threads)
    session_module._stop_live_sessions()
    assert not any(t.is_alive() for t in s._threads), "every stage ended before the interpreter finalizes"


def test_state_changes_apply_from_the_audio_pushed_after_them(avatar: Avatar) -> None:
    """A voice agent queues audio ahead: set_state applies where the audio pushed next starts."""
    s = avatar.session(face(), align="center", state="speak")
    s.push_audio(speech(0.52))  # 13 frames queued
    s.set_state("listen")
    s.push_audio(speech(0.4))  # 10 more
    s.set_expression(smile=0.9)
    s.push_audio(speech(0.2))
    s.close()
    frames = list(s.frames(timeout=60))
    assert [f.state for f in frames] == ["speak"] * 13 + ["listen"] * 15
    assert 13 in np.cumsum(s.times.chunks).tolist(), "a chunk starts exactly at the change"


def test_dialogue_example_switches_states_and_writes_an_mp4(tmp_path: Path) -> None:
    from rtavatar.media import read_video

    out = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "examples" / "dialogue.py"), "--out",
                          str(tmp_path / "d.mp4")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "speak -> listen -> speak -> listen -> speak" in out.stdout
    v = read_video(tmp_path / "d.mp4")
    assert len(v.frames) > 200 and v.audio is not None and abs(len(v.audio) - 640 * len(v.frames)) < 2048


def test_live_session_does_not_cut_speech_streamed_in_real_time(avatar: Avatar) -> None:
    import threading
    import time as _time

    s = avatar.session(face(), align="center", live=True)
    audio = speech(1.2, seed=9) + 0.01  # no exact zeros inside the speech
    it = s.frames(timeout=30)
    frames = [next(it) for _ in range(10)]  # idle frames first

    def feed() -> None:
        t0 = _time.perf_counter()
        for k, i in enumerate(range(0, len(audio), 320)):
            _time.sleep(max(0.0, t0 + k * 0.02 - _time.perf_counter()))
            s.push_audio(audio[i : i + 320])

    t = threading.Thread(target=feed)
    t.start()
    frames += [next(it) for _ in range(60)]
    t.join()
    s.cancel()
    played = np.concatenate([f.audio for f in frames])
    start = int(np.flatnonzero(played)[0])
    assert np.array_equal(played[start : start + len(audio)], audio), "the speech plays whole, no silence cut into it"


def test_listening_frames_do_not_follow_the_audio(avatar: Avatar) -> None:
    """`state="listen"`: speech or silence on the track gives the same frames (the lips hear
    silence); with `mute_listen=False` (the learned state alone) the audio changes them."""
    talk, quiet = speech(1.0), np.zeros(16000, np.float32)
    listen = [avatar.generate(face(), a, align="center", state="listen") for a in (talk, quiet)]
    assert listen[0].shape == (25, 64, 64, 3) and np.array_equal(listen[0], listen[1])
    speak = [avatar.generate(face(), a, align="center", state="speak") for a in (talk, quiet)]
    assert not np.array_equal(speak[0], speak[1])
    cs = avatar.sampler(mute_listen=False)
    ref = cs.reference(face())
    out = []
    for a in (talk, quiet):
        m = avatar.bundle.cfg.net.audio_margin * SAMPLES_PER_FRAME
        wav = torch.from_numpy(np.pad(a[: 6 * SAMPLES_PER_FRAME], (m, m)))[None]
        tokens = avatar.bundle.net.audio_tokens(wav, 6)
        st = torch.full((1, 6), STATE_ID["listen"])
        ctl = torch.zeros(1, 6, avatar.bundle.cfg.net.dit.n_controls)
        out.append(cs.sample(ref, torch.zeros(1, 0, *cs.latent_shape), tokens, st, ctl, torch.Generator().manual_seed(0)))
    assert not torch.equal(out[0], out[1])


def test_live_sessions_move_the_head_only_on_small_pictures(avatar: Avatar) -> None:
    """Head motion costs a resample of the head a frame, so a live session turns it on by default
    only up to LIVE_MOTION_PIXELS; asked for, it is on at any size, and 0 is always off."""
    pytest.importorskip("dlib")
    from PIL import Image

    from rtavatar.engine.avatar import LIVE_MOTION_PIXELS
    from rtavatar.media import read_image

    small = read_image(PHOTO)
    assert small.shape[0] * small.shape[1] <= LIVE_MOTION_PIXELS
    big = np.asarray(Image.fromarray(small).resize((900, 1200), Image.BICUBIC))

    def motion(img: np.ndarray, **kw) -> object:  # noqa: ANN003
        s = avatar.session(img, paste=PasteOptions(**kw))
        s.cancel()
        return s.renderer.motion

    assert motion(small) is not None and motion(big) is None
    assert motion(big, head_motion=1.0) is not None and motion(small, head_motion=0.0) is None
