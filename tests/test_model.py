"""Denoiser, diffusion core, audio encoder and VAE: shapes, caching, routing, correctness."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rtavatar.diffusion import (SAMPLERS, add_noise, cfg_denoiser, consistency_coeffs, consistency_denoiser, ddim_step,
                                sample_consistency, v_target, x0_from_v)
from rtavatar.errors import RTAvatarError
from rtavatar.models.audio import AudioConfig, MelAudioEncoder, window_features
from rtavatar.models.dit import DiT, DiTConfig, Conditioning
from rtavatar.models.vae import LatentCodec, VAEConfig, load_pretrained_vae

SMALL = DiTConfig(latent_size=8, dim=64, depth=2, heads=4, audio_dim=32)


def _model(seed: int = 0, cfg: DiTConfig = SMALL) -> DiT:
    """A DiT with its zero-initialised layers randomised, so every path carries signal."""
    torch.manual_seed(seed)
    m = DiT(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return m


def _inputs(b: int, f: int, cfg: DiTConfig = SMALL, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, Conditioning, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, f, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=g)
    t = torch.rand(b, f, generator=g)
    ref = torch.randn(b, cfg.latent_channels, cfg.latent_size, cfg.latent_size, generator=g)
    cond = Conditioning(
        audio=torch.randn(b, f, 2 * cfg.audio_window + 1, cfg.audio_dim, generator=g),
        state=torch.randint(0, 3, (b, f), generator=g),
        controls=torch.randn(b, f, cfg.n_controls, generator=g),
        guidance=torch.full((b,), 3.0),
    )
    return x, t, cond, ref


@pytest.mark.parametrize("new", [1, 3, 8])
@pytest.mark.parametrize("motion", [0, 2])
def test_output_shapes(new: int, motion: int) -> None:
    m = _model()
    x, t, cond, ref = _inputs(2, motion + new)
    t[:, :motion] = 0.0  # motion frames are clean context
    cond.ref_latent = ref
    with torch.no_grad():
        out = m(x, t, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_zero_init_predicts_zero() -> None:
    torch.manual_seed(0)
    x, t, cond, ref = _inputs(1, 3)
    cond.ref_latent = ref
    assert DiT(SMALL)(x, t, cond).abs().max() == 0, "adaLN-Zero + zero output layer: identity at init"


def test_cached_reference_kv_matches_recomputing() -> None:
    m = _model()
    x, t, cond, ref = _inputs(2, 4)
    with torch.no_grad():
        cache = m.encode_reference(ref)
        for chunk_seed in (1, 2):  # the same cache serves several chunks
            x, t, _, _ = _inputs(2, 4, seed=chunk_seed)
            cached = m(x, t, Conditioning(**{**cond.__dict__, "ref_cache": cache}))
            fresh = m(x, t, Conditioning(**{**cond.__dict__, "ref_latent": ref}))
            torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)
        null = m(x, t, cond)  # the null reference differs from the real one
    assert (null - cached).abs().max() > 1e-3


def _isolated_frames_model() -> DiT:
    """Temporal attention switched off, so each output frame depends only on its own inputs."""
    m = _model()
    with torch.no_grad():
        for blk in m.blocks:
            blk.temporal.out.weight.zero_()
            blk.temporal.out.bias.zero_()
    return m


@pytest.mark.parametrize("what", ["t", "audio", "state", "controls"])
def test_per_frame_conditioning_reaches_only_its_frame(what: str) -> None:
    m = _isolated_frames_model()
    x, t, cond, ref = _inputs(1, 5)
    cond.ref_latent = ref
    with torch.no_grad():
        base = m(x, t, cond)
        if what == "t":
            t = t.clone()
            t[0, 2] = (t[0, 2] + 0.5) % 1.0
        elif what == "audio":
            cond.audio = cond.audio.clone()
            cond.audio[0, 2] += 1.0
        elif what == "state":
            cond.state = cond.state.clone()
            cond.state[0, 2] = (cond.state[0, 2] + 1) % 3
        else:
            cond.controls = cond.controls.clone()
            cond.controls[0, 2] += 1.0
        out = m(x, t, cond)
    change = (out - base).abs().flatten(2).amax(-1)[0]
    assert change[2] > 1e-4
    assert torch.all(change[[0, 1, 3, 4]] < 1e-6), change


def test_temporal_attention_mixes_frames_and_any_length_works() -> None:
    m = _model()
    x, t, cond, ref = _inputs(1, SMALL.max_frames + 8)  # longer than trained: RoPE has no table
    cond.ref_latent = ref
    with torch.no_grad():
        base = m(x, t, cond)
        x2 = x.clone()
        x2[0, 0] += 1.0
        out = m(x2, t, cond)
    assert (out - base)[0, 1:].abs().max() > 1e-5, "frame 0 influences later frames through temporal attention"


def test_v_parameterisation_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, 4, generator=g), torch.randn(2, 3, 4, 4, 4, generator=g)
    t = torch.rand(2, 3, generator=g)
    xt = add_noise(x0, eps, t)
    torch.testing.assert_close(x0_from_v(xt, v_target(x0, eps, t), t), x0, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_reach_the_oracle_and_keep_context(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 4, 4, 2, 2, generator=g)
    x = torch.randn(1, 4, 4, 2, 2, generator=g)
    context = x[:, :2].clone()
    active = torch.tensor([[False, False, True, True]])
    steps = 4 if name == "consistency" else 25  # consistency: few steps, the last at t = T/4 (c_out ~ 1)
    out = SAMPLERS[name](lambda x, t, c: target.expand_as(x), x, active, None, steps=steps, generator=g)
    assert torch.equal(out[:, :2], context), "clean motion frames pass through untouched"
    assert (out[:, 2:] - target[:, 2:]).abs().max() < 0.02


def test_cfg_extrapolates_from_uncond() -> None:
    den = lambda x, t, c: torch.full_like(x, float(c))  # noqa: E731
    guided = cfg_denoiser(den, uncond=1.0, scale=3.0)
    out = guided(torch.zeros(1, 1, 1, 1, 1), torch.zeros(1, 1), 2.0)
    assert out.item() == pytest.approx(1.0 + 3.0 * (2.0 - 1.0))


def test_audio_encoder_lookahead_is_bounded() -> None:
    torch.manual_seed(0)
    enc = MelAudioEncoder(AudioConfig(dim=16, hidden=16)).eval()
    wav = torch.randn(1, 640 * 10) * 0.1
    with torch.no_grad():
        feats = enc(wav)
        cut = wav.clone()
        cut[:, 640 * 5 + enc.lookahead_samples :] = 0
        changed = (enc(cut) - feats).abs().amax(-1)[0]
    assert feats.shape == (1, 10, 16)
    assert torch.all(changed[:5] == 0), "frames 0-4 never see audio past their stated look-ahead"
    assert changed[5:].max() > 0
    assert enc.lookahead_ms == pytest.approx(27.5)
    win = window_features(feats, 2)
    assert win.shape == (1, 10, 5, 16) and torch.equal(win[0, 4, 2], feats[0, 4]) and torch.equal(win[0, 0, 0], feats[0, 0])


def test_vae_shapes_and_local_pretrained_loading(tmp_path: Path) -> None:
    torch.manual_seed(0)
    codec = LatentCodec(VAEConfig(channels=16)).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = codec.encode(x)
        assert z.shape == (2, 4, 8, 8) and codec.decode(z).shape == (2, 3, 64, 64)
    codec.vae.save_pretrained(tmp_path / "taesd")
    loaded = LatentCodec(VAEConfig(channels=16, pretrained=str(tmp_path / "taesd"))).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), z)
    with pytest.raises(RTAvatarError, match="only from a local"):
        load_pretrained_vae(tmp_path / "nowhere")


def test_whisper_encoder_runs_offline_and_is_frozen(tmp_path: Path) -> None:
    import copy

    from rtavatar.models.audio import build_audio_encoder
    from rtavatar.models.avatarnet import AvatarNet, AvatarNetConfig

    enc = build_audio_encoder(AudioConfig(kind="whisper-tiny", dim=32))
    g = torch.Generator().manual_seed(0)
    t = torch.arange(640 * 12) / 16000
    tone = (0.3 * torch.sin(2 * torch.pi * 220 * t))[None]
    noise = torch.randn(1, 640 * 12, generator=g) * 0.1
    feats = enc.features(torch.cat([tone, noise]))
    assert feats.shape == (2, 12, 768)
    assert (feats[0] - feats[1]).abs().mean() > 0.05, "different audio, different features"
    torch.testing.assert_close(enc.features(tone), feats[:1], rtol=1e-4, atol=1e-4)
    assert set(enc.state_dict()) == {"proj.weight", "proj.bias"}, "the Whisper weights stay frozen and outside checkpoints"
    copy.deepcopy(enc)  # EMA copies the model
    cfg = AvatarNetConfig(dit=SMALL, audio=AudioConfig(kind="whisper-tiny", dim=SMALL.audio_dim))
    net = AvatarNet(cfg)
    x = torch.randn(1, 3, 4, 8, 8)
    out = net(x, torch.rand(1, 3), Conditioning(), wav=torch.randn(1, (3 + 2 * cfg.audio_margin) * 640) * 0.1)
    assert out.shape == x.shape
    with pytest.raises(RTAvatarError, match="never downloaded"):
        build_audio_encoder(AudioConfig(kind="whisper-tiny", whisper_path=str(tmp_path)))


def test_whisper_depths_add_a_shallower_copy_of_the_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rtavatar.models.audio import WhisperAudioEncoder, whisper_model_dir
    from rtavatar.models.ct2 import read_model, shallow_whisper, write_model

    monkeypatch.setenv("RTAVATAR_CACHE", str(tmp_path / "cache"))
    src = Path(whisper_model_dir()) / "model.bin"
    model = read_model(src)
    write_model(model, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes(), "the file is read and written back byte for byte"
    assert model.encoder_layers() == 4
    cut = shallow_whisper(str(src.parent), 2)
    assert Path(cut).is_relative_to(tmp_path / "cache")
    short = read_model(Path(cut) / "model.bin")
    assert short.encoder_layers() == 2
    assert {v.name for v in short.variables if not v.name.startswith("encoder/layer_")} == \
        {v.name for v in model.variables if not v.name.startswith("encoder/layer_")}, "only encoder layers are dropped"
    assert shallow_whisper(str(src.parent), 2) == cut, "made once, then reused"
    for depth in (0, 4):
        with pytest.raises(RTAvatarError, match="depth must be 1-3"):
            shallow_whisper(str(src.parent), depth)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RTAVATAR_CACHE", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(RTAvatarError, match="RTAVATAR_CACHE"):
        shallow_whisper(str(src.parent), 1)
    monkeypatch.setenv("RTAVATAR_CACHE", str(tmp_path / "cache"))
    (tmp_path / "bad.bin").write_bytes(src.read_bytes()[:1000])
    with pytest.raises(RTAvatarError, match="not a CTranslate2 model"):
        read_model(tmp_path / "bad.bin")

    g = torch.Generator().manual_seed(0)
    wav = torch.randn(1, 640 * 10, generator=g) * 0.1
    whole = WhisperAudioEncoder(AudioConfig(kind="whisper-tiny", dim=32)).features(wav)
    both = WhisperAudioEncoder(AudioConfig(kind="whisper-tiny", dim=32, whisper_depths=[2]))
    assert both.cfg.whisper_depths == (2,)
    feats = both.features(wav)
    assert feats.shape == (1, 10, 1536) and both.proj.in_features == 1536
    torch.testing.assert_close(feats[..., :768], whole)
    assert (feats[..., 768:] - whole).abs().mean() > 0.1, "the second half is another layer's output"


def test_ddim_step_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 3, 4, 2, 2, generator=g), torch.randn(2, 3, 4, 2, 2, generator=g)
    t, s = torch.full((2, 3), 0.7), torch.full((2, 3), 0.4)
    xt = add_noise(x0, eps, t)
    # With the exact x0, DDIM lands on the same noise draw at s (the ODE is exact along it).
    ref = math.cos(0.2 * math.pi) * x0 + math.sin(0.2 * math.pi) * eps
    torch.testing.assert_close(ddim_step(xt, x0, t, s), ref, rtol=1e-4, atol=1e-5)


def test_consistency_function_meets_the_boundary_condition() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 4, 2, 2, generator=g)
    f = consistency_denoiser(lambda x, t, c: torch.full_like(x, 7.0))
    assert torch.equal(f(x, torch.zeros(1, 2), None), x), "f(x, 0) = x exactly"
    c_skip, c_out = consistency_coeffs(torch.tensor([0.0, 0.5]))
    assert c_skip[0] == 1 and c_out[0] == 0 and c_skip[1] < 1e-3 and c_out[1] > 0.999
    torch.testing.assert_close(f(x, torch.full((1, 2), 0.5), None), torch.full_like(x, 7.0), rtol=0, atol=0.01)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_consistency_sampler_steps_and_context(steps: int) -> None:
    g = torch.Generator().manual_seed(3)
    target = torch.randn(1, 4, 4, 2, 2, generator=g)
    x = torch.randn(1, 4, 4, 2, 2, generator=g)
    active = torch.tensor([[False, True, True, True]])
    seen: list[float] = []

    def den(x: torch.Tensor, t: torch.Tensor, c: object) -> torch.Tensor:
        seen.append(float(t[0, 1]))
        return target.expand_as(x)

    out = sample_consistency(consistency_denoiser(den), x, active, None, steps=steps, generator=g)
    assert len(seen) == steps and seen[0] == pytest.approx(0.999) and seen == sorted(seen, reverse=True)
    assert torch.equal(out[:, :1], x[:, :1])
    assert (out[:, 1:] - target[:, 1:]).abs().max() < 0.01


def test_audio_adaln_puts_the_frames_audio_into_its_conditioning() -> None:
    torch.manual_seed(0)
    m = DiT(DiTConfig(latent_size=8, dim=32, depth=1, heads=4, audio_dim=16, audio_adaln=True)).eval()
    b, f = 1, 3
    t = torch.full((b, f), 0.5)
    cond = Conditioning(state=torch.zeros(b, f, dtype=torch.long), controls=torch.zeros(b, f, 7))
    a1, a2 = torch.randn(2, b, f, 5, 32).unbind(0)
    with torch.no_grad():
        assert torch.equal(m.frame_conditioning(t, cond, a1), m.frame_conditioning(t, cond, a2)), "zero-init: no effect yet"
        torch.nn.init.normal_(m.audio_cond[2].weight)
        c1, c2 = m.frame_conditioning(t, cond, a1), m.frame_conditioning(t, cond, a2)
    assert not torch.allclose(c1[:, 1], c2[:, 1])
    a3 = a1.clone()
    a3[:, 2] = a2[:, 2]  # change only frame 2's audio: only frame 2's conditioning moves
    with torch.no_grad():
        c3 = m.frame_conditioning(t, cond, a3)
    assert torch.equal(c3[:, :2], c1[:, :2]) and not torch.allclose(c3[:, 2], c1[:, 2])
    assert DiT(DiTConfig(latent_size=8, dim=32, depth=1, heads=4, audio_dim=16)).audio_cond is None
