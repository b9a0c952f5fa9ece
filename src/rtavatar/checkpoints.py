"""The run format, and the one loader that turns any teacher / distill / EFT run into an
inference bundle (DESIGN.md §10).

A run is `RUN/checkpoints/step_XXXXXXX/` (newest named by `RUN/checkpoints/latest`), each
holding `model.safetensors` (+ `ema.safetensors`), `config.json` (the training stage's
config) and `state.pt` (optimizer + step). Checkpoints of the denoising stages also carry
what inference needs, so they run on their own, without the other runs they came from:

    inference.json     an InferenceConfig: net, VAE config, latent space, sampling defaults,
                       chunk sizes, and where the denoiser's weights sit in model.safetensors
    vae.safetensors    the VAE's weights
    reader.safetensors (optional) the sync expert's aperture head that reads the openings the
                       model draws, for paste mode `warp` (InferenceConfig.warp_reader "expert")
    motion.safetensors (optional) a MotionNet (models/motion.py: speech -> the mouth's and jaw's
                       landmark motion, trained on real video), its MotionConfig in the metadata

Older checkpoints without them load through their config.json (the VAE then comes from the
teacher's `vae_checkpoint` path). Only safetensors and JSON are read, never pickles (state.pt
is read with weights_only=True).

Integrity: every checkpoint holds `manifest.json` (size and SHA-256 of each file), written and
checked before the checkpoint is renamed into place. Reading verifies every file of it (the
structure of each safetensors and of state.pt, config.json, then the manifest's sizes and
hashes), so a truncated, zero-byte or damaged file is an error naming it, whichever of the
files a reader actually needs; `latest_checkpoint` skips a damaged newest checkpoint for the
newest intact one and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from rtavatar.config import from_dict, to_dict
from rtavatar.diffusion import T_MAX, SamplingConfig
from rtavatar.errors import CheckpointError, RTAvatarError
from rtavatar.models.avatarnet import AvatarNet, AvatarNetConfig
from rtavatar.models.motion import MotionConfig, MotionNet
from rtavatar.models.space import LatentSpace
from rtavatar.models.vae import LatentCodec, VAEConfig

log = logging.getLogger(__name__)

INFERENCE_FILE, VAE_FILE, READER_FILE = "inference.json", "vae.safetensors", "reader.safetensors"
MOTION_FILE = "motion.safetensors"
WARP_READERS = ("dark", "expert")
DENOISING_STAGES = ("teacher", "distill", "eft")


# ---------------------------------------------------------------------------- run format
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(ckdir: Path) -> None:
    files = sorted(p for p in ckdir.iterdir() if p.is_file() and p.name != MANIFEST)
    (ckdir / MANIFEST).write_text(json.dumps({p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files},
                                             indent=1, sort_keys=True))


def _check_safetensors(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes, not a safetensors file)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(f"{path}: truncated (header of {n} bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{path}: damaged header ({e})") from e
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise CheckpointError(f"{path}: {size} bytes, but its header describes {8 + n + end}: truncated or damaged")


def verify_checkpoint(ck: Path) -> None:
    """Raise CheckpointError naming the first missing, truncated or damaged file of `ck`."""
    if not (ck / "model.safetensors").is_file():
        raise CheckpointError(f"{ck}: no model.safetensors")
    cfg = ck / "config.json"
    try:
        json.loads(cfg.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{cfg}: missing") from e
    except ValueError as e:
        raise CheckpointError(f"{cfg}: not valid JSON ({e})") from e
    for p in sorted(ck.glob("*.safetensors")):
        _check_safetensors(p)
    state = ck / "state.pt"
    if state.exists():
        try:
            with zipfile.ZipFile(state) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(f"{state}: truncated or damaged ({e})") from e
        if bad is not None:
            raise CheckpointError(f"{state}: damaged member {bad}")
    manifest = ck / MANIFEST
    if manifest.is_file():  # checkpoints from before manifests have the checks above only
        try:
            entries = json.loads(manifest.read_text())
        except ValueError as e:
            raise CheckpointError(f"{manifest}: not valid JSON ({e})") from e
        for name, want in entries.items():
            p = ck / name
            if not p.is_file():
                raise CheckpointError(f"{p}: missing (listed in {MANIFEST})")
            if p.stat().st_size != want["bytes"] or _sha256(p) != want["sha256"]:
                raise CheckpointError(f"{p}: damaged (its size or SHA-256 differs from {MANIFEST})")


def checkpoint_dirs(run: Path) -> list[Path]:
    """A run's checkpoint directories, newest first."""
    return sorted((p for p in (run / "checkpoints").glob("step_*") if p.is_dir()), reverse=True)


def latest_checkpoint(run: Path, verify: bool = True) -> Path | None:
    """The run's newest intact checkpoint (a damaged newer one is skipped with a warning)."""
    for p in checkpoint_dirs(run):
        if not verify:
            if (p / "model.safetensors").is_file():
                return p
            continue
        try:
            verify_checkpoint(p)
        except CheckpointError as e:
            log.warning("skipping damaged checkpoint %s: %s", p.name, e)
            continue
        return p
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its newest intact checkpoint), a checkpoint directory (verified), or the
    name of a model the package ships (e.g. "photo-v8") where no such path exists."""
    p = Path(path)
    if (p / "model.safetensors").is_file() or (p / "config.json").is_file():
        verify_checkpoint(p)
        return p
    if not p.exists():
        shipped = shipped_model(str(path)) if p.name == str(path) and str(path) else None
        if shipped is not None:
            return resolve_checkpoint(shipped)
        raise RTAvatarError(f"checkpoint {p}: no such file or directory")
    ck = latest_checkpoint(p) if p.is_dir() else None
    if ck is None:
        damaged = checkpoint_dirs(p) if p.is_dir() else []
        if damaged:
            verify_checkpoint(damaged[0])  # raises, naming the damaged file
        raise RTAvatarError(f"checkpoint {p}: no model.safetensors there or in {p}/checkpoints/")
    return ck


def absolute(path: str) -> str:
    """A path a user typed, made absolute (configs store these, so runs work from any directory)."""
    return str(Path(path).expanduser().resolve()) if path else path


def resolve_reference(path: str, base: Path) -> Path:
    """A path stored in a checkpoint's config: as stored if it exists (absolute, or relative
    to the working directory), else relative to each directory above the checkpoint `base`
    (older configs stored paths as typed, relative to where training ran)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for parent in Path(base).resolve().parents:
        if (parent / p).exists():
            return parent / p
    return p


def check_run_dir(run: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse to reuse a run directory silently: without --resume an existing run is kept
    (an error naming --resume and --overwrite); with overwrite its checkpoints and log go."""
    import shutil

    existing = checkpoint_dirs(run)
    if resume and overwrite:
        raise CheckpointError("--resume and --overwrite contradict each other; pick one")
    if existing and not resume:
        if not overwrite:
            raise CheckpointError(f"run {run} already has checkpoints (newest: {existing[0].name}); continue it with --resume, "
                                  "or start it over with --overwrite")
        log.warning("--overwrite: deleting %d checkpoint(s) and the log of %s", len(existing), run)
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # every process of a multi-process run gets here
        (run / "log.jsonl").unlink(missing_ok=True)


def checkpoint_weights(ckpt: Path, ema: bool = False) -> dict[str, Tensor]:
    """A checkpoint's EMA weights (when asked for and saved), else its raw weights."""
    name = "ema.safetensors" if ema and (ckpt / "ema.safetensors").is_file() else "model.safetensors"
    return load_file(ckpt / name)


def load_weights(model: nn.Module, ckpt: Path, ema: bool = False) -> None:
    model.load_state_dict(checkpoint_weights(ckpt, ema))


def read_run_config(checkpoint: str | Path) -> tuple[Path, str | None, dict[str, Any]]:
    """(checkpoint directory, stage name, the rest of its config.json) of a run or checkpoint."""
    ck = resolve_checkpoint(checkpoint)
    raw = json.loads((ck / "config.json").read_text())
    if not isinstance(raw, dict):
        raise CheckpointError(f"{ck / 'config.json'}: not a config object")
    return ck, raw.pop("stage", None), raw


def load_codec(checkpoint: str | Path) -> LatentCodec:
    """The VAE of a `train vae` run, or the VAE a teacher / distill / EFT checkpoint carries
    (older ones: the VAE run their config names), frozen."""
    return _codec_of(*read_run_config(checkpoint))


def _codec_of(ck: Path, stage: str | None, cfg: dict[str, Any]) -> LatentCodec:
    """load_codec for a checkpoint already resolved and verified (read_run_config's result)."""
    if (ck / VAE_FILE).is_file() and (ck / INFERENCE_FILE).is_file():
        codec = LatentCodec(from_dict(InferenceConfig, json.loads((ck / INFERENCE_FILE).read_text())).vae)
        codec.load_state_dict(load_file(ck / VAE_FILE))
        return _frozen_codec(codec, ck / VAE_FILE)
    if stage in DENOISING_STAGES:
        return load_codec(_legacy_inference(ck, stage, cfg)[1])
    if stage != "vae" or "vae" not in cfg:
        raise CheckpointError(f"{ck} is a {stage!r} checkpoint, not a VAE (a `train vae` run)")
    codec = LatentCodec(from_dict(VAEConfig, cfg["vae"]))
    load_weights(codec, ck)
    return _frozen_codec(codec, ck / "model.safetensors")


def _frozen_codec(codec: LatentCodec, weights: Path) -> LatentCodec:
    # Identifies the weights, so latents cached elsewhere (`prepare --vae`) are only reused
    # with the VAE that made them.
    codec.fingerprint = hashlib.sha1(weights.read_bytes()).hexdigest()[:16]
    return codec.eval().requires_grad_(False)


# ---------------------------------------------------------------------------- inference bundle
@dataclass
class InferenceConfig:
    """Everything needed to run a denoising checkpoint, written with it as inference.json."""

    stage: str = "teacher"  # the training stage that wrote it
    net: AvatarNetConfig = field(default_factory=AvatarNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    space: LatentSpace = field(default_factory=LatentSpace)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_new: int = 8  # longest chunk of new frames trained on
    max_motion: int = 2  # motion (context) frames trained on
    weights_prefix: str = ""  # the denoiser's key prefix in model.safetensors ("student." for distill / EFT)
    warp_gain: float = 1.0  # paste mode warp: true opening / the reader's reading (`rtavatar calibrate-warp`)
    # Paste mode warp's reader of the opening drawn: "dark" (MouthReader, pixel darkening) or
    # "expert" (ExpertMouthReader: the aperture head in reader.safetensors).
    warp_reader: str = "dark"

    @property
    def resolution(self) -> int:
        return self.net.dit.latent_size * 8


@dataclass
class Bundle:
    """A loaded denoising checkpoint: the network, its VAE and its InferenceConfig."""

    cfg: InferenceConfig
    net: AvatarNet
    codec: LatentCodec
    checkpoint: Path | None = None
    autocast: Any = None  # a torch dtype to run the denoiser under (engine/quantize.py)
    decoder_autocast: Any = None  # ... and the VAE decoder
    runtime: Any = None  # another backend's dit(x, t, cond) and decode(z) (engine/onnx.py)
    reader: Any = None  # an ApertureHead when cfg.warp_reader == "expert"
    motion: MotionNet | None = None  # speech -> mouth and jaw motion (motion.safetensors), when the checkpoint ships one

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def is_student(self) -> bool:
        return self.cfg.sampling.guidance_input


def set_warp_gain(ckdir: str | Path, gain: float, reader: Any = None) -> None:
    """Record a calibrated warp gain in an exported checkpoint's inference.json (and its
    manifest); with `reader` (an ApertureHead) also ship it as the warp reader."""
    ck = Path(ckdir)
    cfg = from_dict(InferenceConfig, json.loads((ck / INFERENCE_FILE).read_text()))
    cfg.warp_gain = float(gain)
    if reader is not None:
        save_reader(ck, reader)
        cfg.warp_reader = "expert"
    (ck / INFERENCE_FILE).write_text(json.dumps(to_dict(cfg), indent=1, sort_keys=True))
    if (ck / MANIFEST).is_file():
        write_manifest(ck)


def save_reader(ckdir: Path, head: Any) -> None:
    """An ApertureHead as reader.safetensors (float16; its SyncNetConfig in the metadata)."""
    save_file({k: v.detach().half().contiguous() for k, v in head.tower.state_dict().items()}, str(ckdir / READER_FILE),
              metadata={"syncnet": json.dumps(to_dict(head.cfg))})


def load_reader(ckdir: Path) -> Any:
    """reader.safetensors -> a frozen float32 ApertureHead."""
    from safetensors import safe_open

    from rtavatar.models.syncnet import ApertureHead, SyncNetConfig

    path = ckdir / READER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (inference.json asks for warp_reader 'expert')")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "syncnet" not in meta:
        raise CheckpointError(f"{path}: no 'syncnet' config in its metadata")
    head = ApertureHead(from_dict(SyncNetConfig, json.loads(meta["syncnet"])))
    head.tower.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return head.eval().requires_grad_(False)


def save_motion(ckdir: str | Path, net: MotionNet) -> Path:
    """A MotionNet as ckdir/motion.safetensors (float16; its MotionConfig in the metadata);
    the frozen Whisper encoder is not part of it (it ships in its own package)."""
    path = Path(ckdir) / MOTION_FILE
    save_file({k: v.detach().half().contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"motion": json.dumps(to_dict(net.cfg))})
    if (Path(ckdir) / MANIFEST).is_file():
        write_manifest(Path(ckdir))
    return path


def motion_gain_of(run: str | Path, default: float = 1.0, key: str = "val_gap_std_ratio") -> float:
    """1 / the median predicted-to-real std of the inner-lip gap (`key`; "val_width_std_ratio":
    the mouth's width) on a motion run's held-out clips at its last validation (a regression
    under-shoots the amplitude), else `default`."""
    log_path = Path(run) / "val.jsonl"
    if not log_path.is_file():
        return default
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    ratio = lines[-1].get(key) if lines else None
    return float(1.0 / ratio) if ratio else default


def load_motion(path: str | Path, verify: bool = True) -> MotionNet:
    """A frozen float32 MotionNet from a motion.safetensors file, a directory holding one (an
    exported model), or a `train motion` run or checkpoint (its EMA weights). `verify=False`:
    the caller has just verified the checkpoint the file sits in (load_bundle)."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir() and (p / MOTION_FILE).is_file():
        p = p / MOTION_FILE
    if p.is_file():
        if verify and (p.parent / MANIFEST).is_file():
            verify_checkpoint(p.parent)
        elif verify:
            _check_safetensors(p)
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
        if "motion" not in meta:
            raise CheckpointError(f"{p}: no 'motion' config in its metadata")
        net = MotionNet(from_dict(MotionConfig, json.loads(meta["motion"])))
        net.load_state_dict({k: v.float() for k, v in load_file(str(p)).items()})
    else:
        ck, stage, raw = read_run_config(p)
        if stage != "motion":
            raise RTAvatarError(f"checkpoint {ck} is a {stage!r} checkpoint; this needs a motion run or a motion.safetensors")
        net = MotionNet(from_dict(MotionConfig, raw["motion"]))
        load_weights(net, ck, ema=True)
    return net.eval().requires_grad_(False)


def write_inference_files(ckdir: Path, cfg: InferenceConfig, codec: LatentCodec) -> None:
    """Make a checkpoint directory self-contained (called by training before the rename)."""
    (ckdir / INFERENCE_FILE).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    save_file({k: v.detach().contiguous().cpu() for k, v in codec.state_dict().items()}, ckdir / VAE_FILE)


def teacher_inference(raw: dict[str, Any], vae: VAEConfig) -> InferenceConfig:
    """An InferenceConfig from a teacher stage config (its config.json dict)."""
    return InferenceConfig(
        stage="teacher", net=from_dict(AvatarNetConfig, raw.get("net", {})), vae=vae,
        space=LatentSpace(raw.get("residual", True), raw.get("latent_scale", 1.0), raw.get("residual_scale", 1.0)),
        sampling=SamplingConfig(sampler="ddim", steps=20, guidance=2.0), max_new=raw.get("max_new", 8),
        max_motion=raw.get("max_motion", 2))


def student_sampling(guidance: float, t_edit: float | None = None, prior: str = "motion") -> SamplingConfig:
    """How a distilled student samples: one consistency step with its guidance scale as an
    input, from noise, or (EFT, with t_edit) from the prior noised to t_edit."""
    return SamplingConfig(sampler="consistency", steps=1, guidance=guidance, guidance_input=True,
                          start="noise" if t_edit is None else "prior", t_edit=T_MAX if t_edit is None else t_edit, prior=prior)


def student_inference(teacher: InferenceConfig, guidance: float, stage: str = "distill", t_edit: float | None = None,
                      prior: str = "motion") -> InferenceConfig:
    """A distilled (or, with t_edit, editing-fine-tuned) student of `teacher`."""
    sampling = student_sampling(guidance, t_edit, prior)
    return InferenceConfig(stage=stage, net=teacher.net, vae=teacher.vae, space=teacher.space, sampling=sampling,
                           max_new=teacher.max_new, max_motion=teacher.max_motion, weights_prefix="student.")


def _legacy_inference(ck: Path, stage: str, raw: dict[str, Any]) -> tuple[InferenceConfig, Path]:
    """InferenceConfig and VAE run of a checkpoint written before inference.json existed."""
    if stage == "teacher":
        teacher, guidance, edit = raw, None, None
    elif stage == "distill":
        teacher, guidance, edit = raw.get("teacher", {}), raw.get("default_guidance", 2.0), None
    else:
        student = raw.get("student", {})
        teacher, guidance, edit = student.get("teacher", {}), student.get("default_guidance", 2.0), raw
    vae_run = teacher.get("vae_checkpoint", "")
    if not vae_run:
        raise RTAvatarError(f"checkpoint {ck} has neither {VAE_FILE} nor a vae_checkpoint in its config")
    vae_run = str(resolve_reference(vae_run, ck))
    try:
        _, _, vae_raw = read_run_config(vae_run)
    except RTAvatarError as e:
        raise RTAvatarError(f"checkpoint {ck} predates self-contained checkpoints and its VAE run {vae_run!r} "
                            f"is not reachable from here ({e})") from e
    cfg = teacher_inference(teacher, from_dict(VAEConfig, vae_raw["vae"]))
    if guidance is not None:
        cfg = student_inference(cfg, guidance, stage, None if edit is None else edit.get("t_edit", 0.6),
                                "motion" if edit is None else edit.get("prior", "motion"))
    return cfg, Path(vae_run)


def load_bundle(checkpoint: str | Path, ema: bool = True) -> Bundle:
    """Any teacher / distill / EFT run or checkpoint directory -> a frozen Bundle on the CPU."""
    ck, stage, raw = read_run_config(checkpoint)
    if stage not in DENOISING_STAGES:
        raise RTAvatarError(f"checkpoint {ck} is a {stage!r} checkpoint; this needs a teacher, distill or eft run")
    if (ck / INFERENCE_FILE).is_file():
        cfg = from_dict(InferenceConfig, json.loads((ck / INFERENCE_FILE).read_text()))
    else:
        cfg = _legacy_inference(ck, stage, raw)[0]
    codec = _codec_of(ck, stage, raw)  # ck is verified once, by read_run_config
    cfg.sampling.validate()
    if cfg.warp_reader not in WARP_READERS:
        raise CheckpointError(f"{ck}: unknown warp_reader {cfg.warp_reader!r} (known: {', '.join(WARP_READERS)})")
    reader = load_reader(ck) if cfg.warp_reader == "expert" else None
    net = AvatarNet(cfg.net)
    sd = checkpoint_weights(ck, ema)
    p = cfg.weights_prefix
    net.load_state_dict({k.removeprefix(p): v for k, v in sd.items() if k.startswith(p)} if p else sd)
    motion = load_motion(ck / MOTION_FILE, verify=False) if (ck / MOTION_FILE).is_file() else None  # ck verified above
    return Bundle(cfg, net.eval().requires_grad_(False), codec, ck, reader=reader, motion=motion)


def random_bundle(net: str | AvatarNetConfig = "tiny", vae_channels: int = 32, seed: int = 0, max_new: int = 8) -> Bundle:
    """Random weights of a size preset (or net config), sampled like a 1-step student: for
    speed work and tests (the frames are noise). Zero-initialised layers are filled so every
    layer computes what a trained one would."""
    import torch

    from rtavatar.models.dit import PRESETS

    if isinstance(net, str):
        if net not in PRESETS:
            raise RTAvatarError(f"unknown size preset {net!r}; use {', '.join(PRESETS)}")
        net = AvatarNetConfig.preset(net)
    torch.manual_seed(seed)
    cfg = student_inference(InferenceConfig(net=net, vae=VAEConfig(channels=vae_channels), max_new=max_new), guidance=2.0)
    cfg.weights_prefix = ""
    model = AvatarNet(cfg.net)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.abs().sum():
                p.normal_(0, 0.02)
    return Bundle(cfg, model.eval().requires_grad_(False), LatentCodec(cfg.vae).eval().requires_grad_(False), None)


PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MODEL = "photo-v8"


def pretrained_path(name: str = DEFAULT_MODEL) -> Path:
    """The directory of a model shipped inside the package (clear error if it is not there)."""
    p = PRETRAINED_DIR / name
    if not (p / "model.safetensors").is_file():
        have = sorted(d.name for d in PRETRAINED_DIR.iterdir() if d.is_dir()) if PRETRAINED_DIR.is_dir() else []
        raise RTAvatarError(f"no shipped model {name!r} in {PRETRAINED_DIR} (shipped: {', '.join(have) or 'none'}); "
                            "train one (README: Training) or pass --checkpoint RUN")
    return p


def shipped_model(name: str = DEFAULT_MODEL) -> Path | None:
    """The shipped model's directory, or None when the package ships none (the server and the
    benchmark then fall back to random weights and say so)."""
    try:
        return pretrained_path(name)
    except RTAvatarError:
        return None


def _init_motion(ck: Path) -> Path | None:
    """The MotionNet file of the exported model an EFT checkpoint `ck` (verified) started from
    (`init_pretrained`), if it had one."""
    raw = json.loads((ck / "config.json").read_text())
    init = raw.get("init_pretrained") if raw.get("stage") == "eft" else None
    path = Path(init) / MOTION_FILE if init else None
    if path is not None and path.is_file():
        log.info("keeping the MotionNet of %s, the model this run fine-tuned", init)
        return path
    return None


def export_checkpoint(checkpoint: str | Path, out: str | Path, half: bool = True, ema: bool = True,
                      note: dict[str, Any] | None = None, prior: str | None = None, motion: str | Path | None = None,
                      motion_gain: float | None = None, width_gain: float | None = None, voice_gate: bool | None = None) -> Path:
    """A self-contained inference checkpoint of any teacher / distill / EFT run: inference.json,
    the denoiser's (EMA) weights as model.safetensors and vae.safetensors, in float16 when
    `half` (loading casts them back to float32), no optimizer state, and a manifest. What the
    package ships (`Avatar.from_pretrained`). `prior` replaces the EFT start's prior video
    ("motion" or "reference", diffusion.SamplingConfig) the run was trained with. `motion`: a
    MotionNet (a `train motion` run or a motion.safetensors) shipped with it, its offsets scaled
    by `motion_gain` and their sideways part by `width_gain` too (None: the run's own calibration,
    `motion_gain_of`, or for a model's MotionNet as it was), and gated by speech
    (`MotionConfig.voice_gate`) when `voice_gate` (None: as it was; any MotionNet the model has).
    Without `motion`, an EFT run of an exported model ships that model's MotionNet."""
    bundle = load_bundle(checkpoint, ema=ema)
    if motion is None and bundle.motion is None:
        motion = _init_motion(bundle.checkpoint)  # an EFT run of an exported model keeps that model's MotionNet
    if motion is not None:
        bundle.motion = load_motion(motion)
        bundle.motion.cfg.gain = motion_gain_of(motion, bundle.motion.cfg.gain)
        bundle.motion.cfg.width_gain = motion_gain_of(motion, bundle.motion.cfg.width_gain, "val_width_std_ratio")
    overrides = {k: float(v) for k, v in (("gain", motion_gain), ("width_gain", width_gain)) if v is not None}
    overrides |= {} if voice_gate is None else {"voice_gate": voice_gate}
    if overrides and bundle.motion is None:
        raise RTAvatarError(f"{', '.join(overrides)} set the MotionNet's: pass --motion RUN or export a model that has one")
    for name, value in overrides.items():
        setattr(bundle.motion.cfg, name, value)
    if prior is not None:
        bundle.cfg.sampling = replace(bundle.cfg.sampling, prior=prior).validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file():
            old.unlink()
    cast = (lambda t: t.half() if half and t.is_floating_point() else t)  # noqa: E731
    cfg = bundle.cfg
    prefix = cfg.weights_prefix
    cfg.weights_prefix = ""
    save_file({k: cast(v).contiguous() for k, v in bundle.net.state_dict().items()}, str(out / "model.safetensors"))
    save_file({k: cast(v).contiguous() for k, v in bundle.codec.state_dict().items()}, str(out / VAE_FILE))
    if bundle.reader is not None:
        save_reader(out, bundle.reader)
    if bundle.motion is not None:
        save_motion(out, bundle.motion)
    (out / INFERENCE_FILE).write_text(json.dumps(to_dict(cfg), indent=1, sort_keys=True))
    cfg.weights_prefix = prefix
    stage = read_run_config(checkpoint)[1]
    (out / "config.json").write_text(json.dumps({"stage": stage, "exported_from": str(bundle.checkpoint),
                                                 "dtype": "float16" if half else "float32", **(note or {})}, indent=1))
    write_manifest(out)
    load_bundle(out)  # what was written loads, or this raises
    return out
