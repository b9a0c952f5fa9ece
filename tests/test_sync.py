"""The lip-sync expert and the Sync-C / Sync-D protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtavatar.data.dataset import Dataset
from rtavatar.data.synth import SynthConfig, synthesize_dataset
from rtavatar.evaluation.run import evaluate, format_table, load_clips
from rtavatar.evaluation.sync import ExpertScorer, load_expert, offset_distances, sync_scores
from rtavatar.models.syncnet import SyncNet, SyncNetConfig, mouth_crops, sliding_windows
from rtavatar.training.common import TrainConfig, step_generator
from rtavatar.training.data import ClipCache
from rtavatar.training.syncnet import SyncStageConfig, sample_windows, sync_loss, train_syncnet


class ShiftedScorer:
    """Embeddings from a random walk; the audio's are the video's delayed by `lag` frames."""

    window = 5

    def __init__(self, lag: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.walk = torch.nn.functional.normalize(torch.randn(400, 16, generator=g).cumsum(0), dim=-1)
        self.lag = lag

    def video_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        return self.walk[100 : 100 + len(frames) - self.window + 1]

    def audio_embeddings(self, audio: np.ndarray, n_frames: int) -> torch.Tensor:
        return self.walk[100 - self.lag : 100 - self.lag + n_frames - self.window + 1]


@pytest.mark.parametrize("lag", [0, 3, -7])
def test_offset_search_recovers_a_known_av_offset(lag: int) -> None:
    frames = np.zeros((80, 8, 8, 3), np.uint8)
    s = sync_scores(ShiftedScorer(lag), frames, np.zeros(80 * 640, np.float32))
    # sync_d is the zero-padded ends only: |lag| of 76 windows at distance 1
    assert s["offset"] == lag and s["sync_d"] == pytest.approx(abs(lag) / 76, abs=1e-5) and s["sync_c"] > 0.1


def test_offset_distances_pad_with_zero_features_like_the_reference() -> None:
    v = torch.tensor([[0.0], [1.0], [2.0]])
    a = torch.tensor([[0.0], [1.0], [5.0]])
    offsets, d = offset_distances(v, a, max_offset=1)
    assert offsets.tolist() == [-1, 0, 1]
    assert d[1] == pytest.approx((0 + 0 + 3) / 3)  # |0-0|, |1-1|, |2-5|
    assert d[2] == pytest.approx((1 + 4 + 2) / 3)  # v0-a1, v1-a2, v2-(zero past the end)
    assert d[0] == pytest.approx((0 + 1 + 1) / 3)  # v0-(zero), v1-a0, v2-a1


def test_official_syncnet_loads_a_state_dict_and_scores(tmp_path: Path) -> None:
    pytest.importorskip("python_speech_features")
    from rtavatar.errors import RTAvatarError
    from rtavatar.evaluation.official_syncnet import OfficialSyncNet, OfficialSyncNetScorer

    torch.manual_seed(0)
    path = tmp_path / "syncnet_v2.model"
    torch.save(OfficialSyncNet().state_dict(), path)  # same layout as the released file
    scorer = OfficialSyncNetScorer(path)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (9, 96, 96, 3), dtype=np.uint8)
    s = sync_scores(scorer, frames, rng.normal(0, 0.1, 9 * 640).astype(np.float32), max_offset=2)
    assert set(s) == {"sync_c", "sync_d", "offset"} and s["sync_c"] >= 0 and -2 <= s["offset"] <= 2
    assert scorer.video_embeddings(frames).shape == (5, 1024)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.model")
    with pytest.raises(RTAvatarError, match="does not match"):
        OfficialSyncNetScorer(tmp_path / "other.model")
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(RTAvatarError, match="not a SyncNet state dict"):
        OfficialSyncNetScorer(tmp_path / "junk.model")
    with pytest.raises(RTAvatarError, match="download"):
        OfficialSyncNetScorer(tmp_path / "missing.model")


def test_windows_and_mouth_crops_have_the_expected_shapes() -> None:
    cfg = SyncNetConfig()
    x = torch.randn(10, 3, 128, 128)
    m = mouth_crops(x, cfg)
    assert m.shape == (10, 3, *cfg.crop)
    assert mouth_crops(torch.randn(2, 10, 3, 128, 128), cfg).shape == (2, 10, 3, *cfg.crop)
    w = sliding_windows(m, 5)
    assert w.shape == (6, 5, 3, *cfg.crop) and torch.equal(w[2, 0], m[2]) and torch.equal(w[2, 4], m[6])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sync") / "data"
    synthesize_dataset(SynthConfig(clips=4, seed=11, resolution=64, seconds=(4.0, 5.0), workers=2, test_fraction=0.0),
                       root, progress=False)
    return root


def test_sync_loss_has_gradients_for_both_towers(data: Path) -> None:
    cfg = SyncStageConfig(net=SyncNetConfig(width=8, dim=32))
    batch = sample_windows(ClipCache(Dataset(data)), cfg, step_generator(0, 0), 6)
    assert batch["video"].shape == (6, 5, 3, 32, 64) and batch["negatives"].shape == (6, 2, 3200)
    assert batch["mouth_open"].shape == (6, 5) and not batch["mouth_open"].isnan().any()
    # Hard negatives are the same clip's audio at another time: never the positive window
    # (unless both are digital silence).
    voiced = [i for i in range(6) if batch["audio"][i].abs().max() > 0]
    assert len(voiced) >= 3  # windows are centred on voiced frames 80% of the time
    assert not any(torch.equal(batch["audio"][i], batch["negatives"][i, k]) for i in voiced for k in range(2))
    net = SyncNet(cfg.net)
    loss, stats = sync_loss(net, batch)
    loss.backward()
    for tower in (net.video, net.audio, net.aperture):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    assert net.log_temp.grad is not None and 0 <= stats["acc"] <= 1


def test_width_head_learns_from_width_differences_within_a_clip(data: Path) -> None:
    """The width tower's target is the renderer's width formula, as a difference between a
    window frame and another frame of the same clip; prepared video's measured width stands in
    where there are no parts, and no width at all is NaN (no loss)."""
    from rtavatar.data.face import width_factor
    from rtavatar.training.data import log_width_of

    cfg = SyncStageConfig(net=SyncNetConfig(width=8, dim=32, width_head=True))
    batch = sample_windows(ClipCache(Dataset(data)), cfg, step_generator(0, 0), 6)
    assert batch["pair"].shape == (6, 3, 32, 64) and batch["log_width"].shape == (6, 6)
    cols = {"mouth_width": np.array([0.0, 0.2]), "mouth_round": np.array([0.0, 0.5]), "smile": np.array([1.0, -0.5])}
    assert np.allclose(log_width_of(cols, 2), np.log([1.12, 1.2 - 0.175]))
    assert np.allclose(np.exp(log_width_of(cols, 2)), width_factor(cols["mouth_width"], cols["mouth_round"], cols["smile"]))
    assert np.allclose(log_width_of({"mouth_width": np.array([0.1])}, 1), np.log(1.1)), "measured width (prepare)"
    assert np.isnan(log_width_of({}, 3)).all()
    net = SyncNet(cfg.net)
    loss, stats = sync_loss(net, batch)
    loss.backward()
    assert stats["width_mse"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.width_tower.parameters())
    # Without the head nothing changes: no pair is drawn, the tower is absent and refuses to read.
    plain = SyncNet(SyncNetConfig(width=8, dim=32))
    assert plain.width_tower is None and "pair" not in sample_windows(ClipCache(Dataset(data)), SyncStageConfig(
        net=SyncNetConfig(width=8, dim=32)), step_generator(0, 0), 2)
    with pytest.raises(ValueError, match="no width head"):
        plain.mouth_width(batch["pair"])


@pytest.fixture(scope="module")
def expert(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SyncStageConfig(net=SyncNetConfig(width=8, dim=32), hard_negatives=2,
                          train=TrainConfig(steps=150, batch_size=16, lr=2e-3, warmup=10, ema=0.0, ckpt_every=150, log_every=10))
    run = tmp_path_factory.mktemp("expert") / "sync"
    train_syncnet(cfg, data, run)
    return run


def test_expert_learns_to_tell_synced_from_shifted_audio(data: Path, expert: Path) -> None:
    scorer = load_expert(expert)
    assert isinstance(scorer, ExpertScorer)
    ds = Dataset(data)
    found = []
    for i in range(len(ds)):
        clip = ds.load(i)
        synced = sync_scores(scorer, clip.frames, clip.audio)
        late = sync_scores(scorer, clip.frames, np.concatenate([np.zeros(640 * 8, np.float32), clip.audio]))
        found.append(abs(synced["offset"]) <= 1 and abs(late["offset"] - 8) <= 1)
    # Audio delayed by 8 frames: video window i now matches audio window i + 8.
    assert sum(found) >= 3, found
    logged = [json.loads(line) for line in (expert / "log.jsonl").read_text().splitlines()]
    assert logged[-1]["aperture_mse"] < logged[0]["aperture_mse"] / 2


def test_eval_rows_separate_good_and_broken_systems(data: Path, expert: Path) -> None:
    clips = load_clips(str(data), split="train", clips=3, seconds=4.0)
    by_id = {c.clip_id: c for c in clips}
    truth = {c.frames[0].tobytes(): c.frames for c in clips}  # portrait -> its own clip (a perfect "generator")
    systems = {"copy": lambda portrait, audio: truth[portrait.tobytes()],
               "frozen": lambda portrait, audio: np.repeat(portrait[None], len(audio) // 640, 0)}
    rows = {r["system"]: r for r in evaluate(systems, list(by_id.values()), load_expert(expert))}
    gt, late, copy, frozen = rows["ground truth"], rows["ground truth, audio 8 frames late"], rows["copy"], rows["frozen"]
    assert copy["sync_c"] == pytest.approx(gt["sync_c"]) and copy["fd_sync"] == pytest.approx(0.0, abs=1e-3)
    assert late["abs_offset"] > gt["abs_offset"] + 4
    assert frozen["jitter"] == 0.0 and gt["jitter"] > 0.1
    assert frozen["fd_sync"] > 10 * max(copy["fd_sync"], 1e-3) and frozen["fps"] > 0
    assert copy["speedup"] == 1.0 and frozen["speedup"] == pytest.approx(frozen["fps"] / copy["fps"])
    table = format_table(list(rows.values()))
    assert "| frozen |" in table and f"{gt['aperture_corr']:.3f} ± {gt['aperture_corr_se']:.3f}" in table
    assert gt["aperture_corr_se"] > 0 and frozen["jitter_se"] == 0.0  # spread over the 3 clips


def test_standard_error_skips_non_finite_values() -> None:
    from rtavatar.evaluation.metrics import standard_error

    assert standard_error([1.0, 2.0, 3.0, 4.0, float("nan")]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert np.isnan(standard_error([1.0, float("nan")]))


def test_eval_checkpoint_spec_takes_step_counts() -> None:
    from rtavatar.cli import _checkpoint_steps

    assert _checkpoint_steps("runs/student:1,2,4") == ("runs/student", [1, 2, 4])
    assert _checkpoint_steps("runs/teacher") == ("runs/teacher", [])
    assert _checkpoint_steps("C:/runs/x") == ("C:/runs/x", [])
