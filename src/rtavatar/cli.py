"""The `rtavatar` command (DESIGN.md §8). Subcommands appear here as they start working."""

from __future__ import annotations

import argparse
import json
import math
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rtavatar.errors import RTAvatarError
from rtavatar.utils import setup_logging

from rtavatar.photo.options import DEFAULT_PASTE_MODE, MAX_BLINKS, MAX_HEAD_MOTION, PASTE_MODES, PasteOptions  # torch-free

if TYPE_CHECKING:  # the engine imports torch: the CLI loads it only for the commands that run a model
    from rtavatar.engine import Avatar

_PASTE_HELP = ("warp: the photo's own lips move to the opening the model drew (default); photo: the model's lower face "
               "where it moved, the photo's own pixels elsewhere; face: paste the whole generated face")
log = logging.getLogger("rtavatar.cli")
PRECISION_CHOICES = ["fp32", "int8", "bf16", "int8+bf16", "fp32+bf16", "auto"]


def _seconds_range(text: str) -> tuple[float, float]:
    try:
        lo, _, hi = text.partition("-")
        lo_f, hi_f = float(lo), float(hi or lo)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected LO-HI seconds like 4-10, got {text!r}") from e
    if not 0.5 <= lo_f <= hi_f <= 600:
        raise argparse.ArgumentTypeError(f"seconds range {text!r} must satisfy 0.5 <= LO <= HI <= 600")
    return lo_f, hi_f


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}") from e
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction {text!r} is outside [0, 1]")
    return x


def cmd_synth_data(args: argparse.Namespace) -> dict:
    from rtavatar.data.synth import SynthConfig, synthesize_dataset

    cfg = SynthConfig(
        clips=args.clips, seed=args.seed, resolution=args.resolution, seconds=args.seconds,
        identities=args.identities, workers=args.workers, test_fraction=args.test_fraction,
        portraits=args.portraits, photo_fraction=args.photo_fraction, photo_head_motion=args.photo_head_motion,
        photo_degrade=args.photo_degrade,
    )
    return synthesize_dataset(cfg, args.out, progress=not args.quiet)


def cmd_demo(args: argparse.Namespace) -> dict:
    from rtavatar.commands.demo import run_demo, run_network_demo

    check_output(args.out)
    if args.synthetic:
        return run_demo(out=args.out, text=args.text, seed=args.seed, resolution=args.resolution)
    return run_network_demo(out=args.out, image=args.image, audio=args.audio, text=args.text, checkpoint=args.checkpoint,
                            precision=args.precision)


def cmd_prepare(args: argparse.Namespace) -> dict:
    from rtavatar.data.prepare import PrepareConfig, prepare_dataset

    cfg = PrepareConfig(resolution=args.resolution, detect_every=args.detect_every, min_seconds=args.min_seconds,
                        max_seconds=args.max_seconds, test_fraction=args.test_fraction)
    return prepare_dataset(args.videos, args.out, cfg, workers=args.workers, resume=args.resume,
                           vae=args.vae, progress=not args.quiet)


def check_output(path: str) -> None:
    """Fail before any work when an output file cannot be written where asked (its directory is created)."""
    p = Path(path)
    if p.is_dir():
        raise RTAvatarError(f"--out {p} is a directory; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RTAvatarError(f"--out {p}: cannot create its directory ({e.strerror})") from e


def _checkpoint_steps(spec: str) -> tuple[str, list[int]]:
    """'runs/student:1,2,4' -> ('runs/student', [1, 2, 4]); a plain path -> (path, [])."""
    path, sep, tail = spec.rpartition(":")
    if sep and tail and all(p.isdigit() for p in tail.split(",")):
        return path, [int(p) for p in tail.split(",")]
    return spec, []


def _eval_avatar(args: argparse.Namespace) -> Avatar:
    """The one model an `eval --photos / --videos / --speech` run scores: --checkpoint, else the shipped one."""
    from rtavatar.engine import Avatar

    return Avatar.load(args.checkpoint[0], precision=args.precision) if args.checkpoint else Avatar.from_pretrained(precision=args.precision)


def _report(args: argparse.Namespace, result: dict, table: str) -> dict:
    """Name the model, print the table, write the JSON to --out; the JSON-safe result."""
    from rtavatar.evaluation.videos import jsonable

    result["model"] = args.checkpoint[0] if args.checkpoint else "shipped"
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps(jsonable(result), indent=1))
    return jsonable(result)


def cmd_eval_photos(args: argparse.Namespace) -> dict:
    from rtavatar.evaluation.photos import evaluate_photos, format_photo_table, list_photos
    from rtavatar.media import read_audio

    if not args.audio:
        raise RTAvatarError("eval --photos needs --audio WAV (speech with pauses: espeak-ng makes one)")
    if len(args.checkpoint) > 1:
        raise RTAvatarError("eval --photos scores one model: give at most one --checkpoint")
    for p in (args.out, args.strip):
        if p:
            check_output(p)
    photos = list_photos(args.photos)
    audio = read_audio(args.audio)
    rows = evaluate_photos(_eval_avatar(args), photos, audio, steps=args.steps[0] if args.steps else None,
                           controls=not args.no_controls, strip=args.strip or None, paste=paste_options(args))
    print(format_photo_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return {"rows": rows}


def cmd_eval_videos(args: argparse.Namespace) -> dict:
    from rtavatar.evaluation.videos import evaluate_videos, format_video_table, list_videos

    if args.photos:
        raise RTAvatarError("give --videos or --photos, not both")
    if args.audio:
        raise RTAvatarError("eval --videos animates each clip with its own audio: drop --audio")
    if len(args.checkpoint) > 1:
        raise RTAvatarError("eval --videos scores one model: give at most one --checkpoint")
    if args.out:
        check_output(args.out)
    if args.strip and Path(args.strip).suffix.lower() in (".png", ".jpg", ".jpeg"):
        check_output(args.strip)
    videos = list_videos(args.videos)[: args.clips or None]
    result = evaluate_videos(_eval_avatar(args), videos, paste=paste_options(args), steps=args.steps[0] if args.steps else None,
                             seed=args.seed, seeds=args.seeds, strip_to=args.strip or None)
    return _report(args, result, format_video_table(result))


def cmd_eval_speech(args: argparse.Namespace) -> dict:
    from rtavatar.assets import SAMPLE_PORTRAIT
    from rtavatar.evaluation.speech import evaluate_speech, format_speech_table, list_speech

    if args.photos or args.videos or args.audio:
        raise RTAvatarError("eval --speech animates one photo (--image) with each recording: drop --photos, --videos and --audio")
    if len(args.checkpoint) > 1:
        raise RTAvatarError("eval --speech scores one model: give at most one --checkpoint")
    if args.out:
        check_output(args.out)
    files = list_speech(args.speech)[: args.clips or None]
    result = evaluate_speech(_eval_avatar(args), files, args.image or SAMPLE_PORTRAIT, paste=paste_options(args),
                             steps=args.steps[0] if args.steps else None, seed=args.seed)
    return _report(args, result, format_speech_table(result))


def cmd_eval(args: argparse.Namespace) -> dict:
    from rtavatar.engine import Avatar
    from rtavatar.evaluation.run import evaluate, format_table, load_clips
    from rtavatar.evaluation.sync import load_expert

    if args.seeds != 1 and not args.videos:
        raise RTAvatarError("--seeds applies to eval --videos (the renderer's blinks and head sway, averaged over seeds)")
    if args.speech:
        return cmd_eval_speech(args)
    if args.videos:
        return cmd_eval_videos(args)
    if args.seed:
        raise RTAvatarError("--seed applies to eval --videos and --speech (the renderer's blinks and head sway)")
    if args.photos:
        return cmd_eval_photos(args)
    if not args.expert or not args.data:
        raise RTAvatarError("eval needs --expert and --data (or --photos DIR --audio WAV for real photos, "
                            "or --videos DIR for real talking clips)")
    if not args.checkpoint:
        raise RTAvatarError("eval needs at least one --checkpoint (list the teacher first: speedup is relative to it)")
    if len(set(args.checkpoint)) != len(args.checkpoint):
        raise RTAvatarError("the same --checkpoint is listed twice")
    if args.out:
        check_output(args.out)
    clips = load_clips(args.data, args.split, args.clips, args.seconds)
    systems = {}
    for spec in args.checkpoint:
        ck, step_list = _checkpoint_steps(spec)
        avatar = Avatar.load(ck, precision=args.precision)
        for steps in step_list or args.steps or [avatar.bundle.cfg.sampling.steps]:
            avatar.sampler(steps, args.guidance)  # a bad value fails here, before any generation
            systems[f"{Path(ck).name} {steps} steps{'' if args.precision == 'fp32' else ' ' + args.precision}"] = (
                lambda portrait, audio, a=avatar, n=steps: a.generate(portrait, audio, align="center", steps=n, guidance=args.guidance))
    rows = evaluate(systems, clips, load_expert(args.expert))
    print(format_table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return {"rows": rows}


def _stage_config(stage: str, spec: str | None) -> object:
    """A stage config from a YAML/JSON file, or the defaults with a DiT size preset name."""
    from rtavatar.config import load_config
    from rtavatar.models.dit import PRESETS
    from rtavatar.training.distill import DistillConfig
    from rtavatar.training.eft import EFTConfig
    from rtavatar.training.motion import MotionStageConfig
    from rtavatar.training.syncnet import SyncStageConfig
    from rtavatar.training.teacher import TeacherConfig
    from rtavatar.training.vae import VAEStageConfig

    cls = {"vae": VAEStageConfig, "teacher": TeacherConfig, "syncnet": SyncStageConfig, "distill": DistillConfig,
           "eft": EFTConfig, "motion": MotionStageConfig}[stage]
    if spec and Path(spec).is_file():
        return load_config(cls, spec)
    if spec and spec not in PRESETS:
        raise RTAvatarError(f"--config {spec!r} is neither a file nor one of {sorted(PRESETS)}")
    cfg = cls()
    if stage == "teacher" and spec:
        from rtavatar.models.avatarnet import AvatarNetConfig

        cfg.net = AvatarNetConfig.preset(spec)
    return cfg


def cmd_train(args: argparse.Namespace) -> dict:
    cfg = _stage_config(args.stage, args.config)
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.batch_size is not None:
        cfg.train.batch_size = args.batch_size
    from rtavatar.config import check_values

    check_values(cfg)
    cfg.train.validate()  # before any data is read
    if args.stage == "vae":
        from rtavatar.training.vae import train_vae

        return train_vae(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    if args.stage == "syncnet":
        from rtavatar.training.syncnet import train_syncnet

        return train_syncnet(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    if args.stage == "motion":
        from rtavatar.training.motion import train_motion

        return train_motion(cfg, args.data.split(","), args.out, resume=args.resume, overwrite=args.overwrite)
    if args.stage == "distill":
        from rtavatar.training.distill import train_distill

        if args.teacher:
            cfg.teacher_checkpoint = args.teacher
        if args.init_from:
            cfg.init_from = args.init_from
        return train_distill(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    if args.stage == "eft":
        from rtavatar.training.eft import train_eft

        if args.student:
            from rtavatar.training.eft import is_export

            cfg.distill_checkpoint, cfg.init_pretrained = ("", args.student) if is_export(args.student) else (args.student, "")
        return train_eft(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite)
    from rtavatar.training.teacher import train_teacher

    if args.vae:
        cfg.vae_checkpoint = args.vae
    if args.init_from:
        cfg.init_from = args.init_from
    return train_teacher(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite)


def cmd_generate(args: argparse.Namespace) -> dict:
    from rtavatar.commands.generate import generate_file

    check_output(args.out)
    return generate_file(args.checkpoint, args.image, args.audio, args.out, steps=args.steps, state=args.state,
                         expression=args.expression, guidance=args.guidance, seed=args.seed, align=args.align,
                         paste=None if args.no_paste_back else paste_options(args), precision=args.precision)


def _int(lo: int, hi: int | None = None):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            x = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
        if x < lo or (hi is not None and x > hi):
            raise argparse.ArgumentTypeError(f"{x} is outside [{lo}, {hi if hi is not None else 'inf'}]")
        return x

    return parse


def _float(lo: float, hi: float, *, open_lo: bool = False):  # noqa: ANN202 - an argparse type: finite, in range
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from e
        if not math.isfinite(x) or x < lo or x > hi or (open_lo and x == lo):
            raise argparse.ArgumentTypeError(f"{text} is outside {'(' if open_lo else '['}{lo:g}, {hi:g}]")
        return x

    return parse


# A value that means "not given" or "automatic" (None, or 0 for --workers, --threads, --first-chunk) is only ever the
# default, never a value a user can type: argparse does not pass a non-string default through `type`, and the types
# refuse 0, so `--batch-size 0` is an error rather than "no override".
_positive_int = _int(1)
_positive_float = _float(0.0, 1e6, open_lo=True)
_guidance = _float(0.0, 20.0)
_resolution = _int(32, 2048)


def add_paste_args(parser: argparse.ArgumentParser, when: str) -> None:
    """The photo renderer's options (photo/options.PasteOptions), one argument group on every command."""
    d = PasteOptions()
    g = parser.add_argument_group(f"photo renderer ({when})")
    g.add_argument("--paste-mode", default=DEFAULT_PASTE_MODE, choices=PASTE_MODES, help=_PASTE_HELP)
    g.add_argument("--head-motion", type=_float(0.0, MAX_HEAD_MOTION), default=d.head_motion,
                   help="scale of the head's sway, tilt and nod (0 keeps the head still; default 1, or for a live session "
                        "on a picture over 640x480 px, 0)")
    g.add_argument("--keep-parted-lips", action="store_true",
                   help="warp: a photo whose lips are parted (a smile over teeth) keeps them so while the mouth is "
                        "closed (default: they close)")
    g.add_argument("--blinks", type=_float(0.0, MAX_BLINKS), default=d.blinks,
                   help=f"blinks a minute (default {d.blinks:g}; 0: none)")


def paste_options(args: argparse.Namespace) -> PasteOptions:
    return PasteOptions(mode=args.paste_mode, head_motion=args.head_motion, close_lips=not args.keep_parted_lips,
                        blinks=args.blinks)


def cmd_bench(args: argparse.Namespace) -> dict:
    from rtavatar.assets import SAMPLE_PORTRAIT
    from rtavatar.commands.bench import run_bench
    from rtavatar.engine import ChunkSchedule

    schedule = ChunkSchedule(first=args.first_chunk) if args.first_chunk else None
    photo = str(SAMPLE_PORTRAIT) if args.photo == "sample" else args.photo
    out = run_bench(checkpoint=args.checkpoint, config=args.config, steps=args.steps, quantize=args.quantize,
                    pipeline=not args.no_pipeline, seconds=args.seconds, threads=args.threads, backend=args.backend,
                    schedule=schedule, photo=photo, paste=paste_options(args))
    if not args.json:
        for k, v in out.items():
            print(f"{k:>20}: {v}")
    return out


def cmd_calibrate_warp(args: argparse.Namespace) -> dict:
    from rtavatar.commands.calibrate import run_calibrate

    if args.out:
        check_output(args.out)
    out = run_calibrate(args.data, checkpoint=args.checkpoint, expert=args.expert, clips=args.clips, out=args.out,
                        write=args.write)
    if not args.json:
        print(json.dumps({k: out[k] for k in ("gain", "r")}))
    return out


def cmd_serve(args: argparse.Namespace) -> dict:
    from rtavatar.server.app import serve

    serve(host=args.host, port=args.port, checkpoint=args.checkpoint, max_sessions=args.max_sessions, precision=args.precision,
          token=args.token, allowed_origins=tuple(args.allowed_origin),
          log_json=args.log_json)
    return {}


def cmd_export_onnx(args: argparse.Namespace) -> dict:
    from rtavatar.engine import Avatar
    from rtavatar.engine.onnx import export_onnx

    avatar = Avatar.load(args.checkpoint) if args.checkpoint else Avatar.random(args.config or "tiny")
    out = export_onnx(avatar.bundle, args.out)
    if not args.json:
        print(json.dumps(out, indent=1))
    return out


def cmd_export(args: argparse.Namespace) -> dict:
    from rtavatar.checkpoints import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, half=not args.fp32, prior=args.prior, motion=args.motion,
                            motion_gain=args.motion_gain, width_gain=args.motion_width_gain, voice_gate=args.voice_gate)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    res = {"out": str(out), "files": files, "megabytes": round(sum(files.values()) / 1e6, 2)}
    if not args.json:
        print(json.dumps(res, indent=1))
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtavatar", description="Real-time audio-driven talking-portrait video.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the shipped network animating the bundled photo with bundled speech (see README)")
    d.add_argument("--out", default="demo.mp4", help="output mp4 (default demo.mp4)")
    d.add_argument("--image", default=None, help="portrait photo (default: the bundled CC0 sample)")
    d.add_argument("--audio", default=None, help="speech (default: the bundled espeak-ng sample)")
    d.add_argument("--text", default=None, help="what the avatar says, spoken by espeak-ng (instead of --audio)")
    d.add_argument("--checkpoint", default=None, help="a teacher / distill / EFT run instead of the shipped model")
    d.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES, help="denoiser[+decoder] precision")
    d.add_argument("--synthetic", action="store_true", help="render the procedural generator instead (no network)")
    d.add_argument("--seed", type=int, default=7, help="--synthetic: identity seed")
    d.add_argument("--resolution", type=_resolution, default=256, help="--synthetic: frame size")
    d.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("synth-data", help="generate a synthetic talking-face dataset (docs/DATA.md)")
    s.add_argument("--out", required=True, help="dataset directory (created; an existing one is completed)")
    s.add_argument("--clips", type=_positive_int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resolution", type=_resolution, default=128)
    s.add_argument("--seconds", type=_seconds_range, default=(4.0, 10.0), help="clip length range LO-HI (default 4-10)")
    s.add_argument("--identities", type=_int(0), default=0, help="0: a new identity per clip; N: reuse N identities")
    s.add_argument("--workers", type=_int(1, 256), default=0, help="processes (default: one per core)")
    s.add_argument("--test-fraction", type=_fraction, default=0.05,
                   help="share of identities held out as split=test, with held-out sentences (default 0.05; 1: an all-test set)")
    s.add_argument("--portraits", default="", help="folder of face photos: animate them as photo identities (docs/DATA.md)")
    s.add_argument("--photo-fraction", type=_fraction, default=0.5, help="with --portraits: share of clips that are photos (default 0.5)")
    s.add_argument("--photo-head-motion", type=_fraction, default=0.35,
                   help="with --portraits: share of the behaviour's head motion photo clips keep (default 0.35)")
    s.add_argument("--photo-degrade", type=_fraction, default=0.0,
                   help="with --portraits: share of photo identities given a webcam's look: darker, softer, noisy (default 0)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    s.set_defaults(func=cmd_synth_data)

    pr = sub.add_parser("prepare", help="talking-head videos -> training dataset (docs/DATA.md)")
    pr.add_argument("--videos", required=True, help="directory of videos (searched recursively)")
    pr.add_argument("--out", required=True, help="dataset directory")
    pr.add_argument("--resolution", type=_resolution, default=512, help="crop side in pixels (default 512)")
    pr.add_argument("--workers", type=_int(1, 256), default=0, help="processes (default: one per core)")
    pr.add_argument("--resume", action="store_true", help="continue an interrupted run; finished videos are kept")
    pr.add_argument("--detect-every", type=_positive_int, default=1, help="run the face detector every N frames (track between)")
    pr.add_argument("--min-seconds", type=_positive_float, default=2.0, help="drop usable spans shorter than this")
    pr.add_argument("--max-seconds", type=_positive_float, default=20.0, help="split longer spans into clips")
    pr.add_argument("--test-fraction", type=_fraction, default=0.0, help="fraction of videos held out as split=test")
    pr.add_argument("--vae", default=None, help="a `train vae` run: also cache each clip's latents")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    pr.set_defaults(func=cmd_prepare)

    ev = sub.add_parser("eval", help="score generated held-out clips: Sync-C/D (our expert), aperture, jitter, FD-sync, fps; "
                                     "or real photos (--photos), or real talking clips (--videos)")
    ev.add_argument("--checkpoint", action="append", default=[],
                    help="teacher, distill or eft run, optionally with its step counts: RUN:1,2,4 "
                         "(repeatable; list the teacher first: speedup is relative to the first system)")
    ev.add_argument("--expert", default="", help="`train syncnet` run (our sync expert)")
    ev.add_argument("--data", default="", help="dataset with held-out clips (docs/DATA.md)")
    ev.add_argument("--photos", default="", help="a photo or folder of photos: animate each with --audio and score it with dlib "
                                                 "(evaluation/photos.py; default model: the shipped one)")
    ev.add_argument("--videos", default="", help="a talking clip or folder of clips: self-reenactment (a mouth-shut frame of "
                                                 "the first second animated with the clip's own audio) scored against the "
                                                 "person with dlib (evaluation/videos.py; default model: the shipped one)")
    ev.add_argument("--speech", default="", help="a recording or folder of recordings: animate one photo (--image) with each and "
                    "check with dlib and silero-vad that the mouth opens in speech and rests in pauses (evaluation/speech.py)")
    ev.add_argument("--image", default="", help="with --speech: the photo (default: the bundled sample)")
    ev.add_argument("--audio", default="", help="with --photos: the speech to animate them with")
    ev.add_argument("--strip", default="", help="with --photos: write a frame strip (PNG) here; with --videos: FILE.png/.jpg "
                                                "for one sheet of every clip, or a folder for one PNG per clip")
    ev.add_argument("--no-controls", action="store_true", help="with --photos: skip the listen / smile runs")
    add_paste_args(ev, "with --photos or --videos")
    ev.add_argument("--split", default="test")
    ev.add_argument("--clips", type=_int(0), default=0, help="at most this many clips (0: all)")
    ev.add_argument("--seed", type=int, default=0, help="with --videos / --speech: the renderer's seed (its blinks and head sway)")
    ev.add_argument("--seeds", type=int, default=1,
                    help="with --videos: render each clip with this many seeds from --seed on and score the mean of each measure")
    ev.add_argument("--seconds", type=_positive_float, default=8.0, help="score the first S seconds of each clip")
    ev.add_argument("--steps", type=_positive_int, action="append", default=None,
                    help="sampling steps (repeatable; default 20 for a teacher, 1 for a distilled student)")
    ev.add_argument("--guidance", type=_guidance, default=None, help="default 2 (teacher CFG) or the student's own")
    ev.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES, help="inference precision: denoiser[+decoder] (engine/quantize.py)")
    ev.add_argument("--out", default="", help="write the rows as JSON here")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    g = sub.add_parser("generate", help="portrait + audio -> mp4 (the shipped model, or --checkpoint)")
    g.add_argument("--image", required=True)
    g.add_argument("--audio", required=True, help="any audio file or a video's audio track")
    g.add_argument("--out", required=True)
    g.add_argument("--checkpoint", default=None, help="teacher, distill or eft run (or checkpoint directory; default: the shipped model)")
    g.add_argument("--steps", type=_positive_int, default=None, help="default 20 (teacher, DDIM) or 1 (distilled student)")
    g.add_argument("--guidance", type=_guidance, default=None,
                   help="guidance scale on audio: CFG for a teacher (default 2), an input for a student")
    g.add_argument("--state", default="auto", choices=["auto", "speak", "listen", "idle"], help="auto (from voice activity), speak, listen or idle")
    g.add_argument("--expression", default=None, help="controls, e.g. smile=0.6,yaw=10 (docs/DATA.md)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--align", default="face", choices=["face", "center"],
                   help="face: find and crop the face like the training data (dlib); center: the picture already is a face crop")
    g.add_argument("--no-paste-back", action="store_true", help="write the aligned face crop instead of the whole picture")
    add_paste_args(g, "unless --no-paste-back")
    g.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES, help="denoiser[+decoder] precision")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_generate)

    b = sub.add_parser("bench", help="stream speech through a live session and measure fps, first-frame latency, memory")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="teacher, distill or eft run (default: the shipped model, else random tiny weights)")
    src.add_argument("--config", default=None, choices=["tiny", "base", "paper"], help="random weights of a size preset (speed only)")
    b.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the checkpoint's; 25 = a teacher's path)")
    b.add_argument("--quantize", default="fp32", choices=PRECISION_CHOICES,
                   help="denoiser[+decoder] precision: int8 = INT8 denoiser; bf16 = both bf16; int8+bf16 = INT8 denoiser, bf16 decoder")
    b.add_argument("--no-pipeline", action="store_true", help="run the stages one after the other in one thread")
    b.add_argument("--seconds", type=_positive_float, default=10.0, help="seconds of speech streamed (default 10)")
    b.add_argument("--threads", type=_int(1, 1024), default=0, help="torch threads (default: torch's choice)")
    b.add_argument("--first-chunk", type=_positive_int, default=0, help="frames in the first chunk (default 1)")
    b.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    b.add_argument("--photo", nargs="?", const="sample", default=None,
                   help="register a photo (default: the bundled sample) and paste every frame back into it")
    add_paste_args(b, "with --photo")
    b.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    b.set_defaults(func=cmd_bench)

    cw = sub.add_parser("calibrate-warp", help="the gain of paste mode warp's mouth reader for a model, from photo clips "
                                               "(commands/calibrate.py); --write stores it in the checkpoint")
    cw.add_argument("--data", required=True, help="a synth-data dataset with photo clips (training split: synth-data "
                                                  "--test-fraction 0 --photo-fraction 1 --portraits DIR)")
    cw.add_argument("--checkpoint", default=None, help="default: the shipped model")
    cw.add_argument("--expert", default=None, help="a `train syncnet` run: read with its aperture head")
    cw.add_argument("--clips", type=_positive_int, default=4, help="photo clips to read (default 4)")
    cw.add_argument("--out", default=None, help="write the per-clip rows and the gain as JSON here")
    cw.add_argument("--write", action="store_true", help="store the gain in the checkpoint (inference.json warp_gain)")
    cw.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    cw.set_defaults(func=cmd_calibrate_warp)

    sv = sub.add_parser("serve", help="HTTP + WebSocket server around one loaded model (docs/PROTOCOL.md)")
    sv.add_argument("--host", default="127.0.0.1", help="default loopback only")
    sv.add_argument("--port", type=_int(1, 65535), default=8000)
    sv.add_argument("--checkpoint", default=None, help="teacher, distill or eft run (default: the shipped model)")
    sv.add_argument("--max-sessions", type=_positive_int, default=4)
    sv.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                    help="default auto: INT8 denoiser, + bf16 decoder where the CPU has AMX (fp32 does not keep real "
                         "time beside a browser on 2 cores)")
    sv.add_argument("--log-json", action="store_true", help="structured logs: one JSON object per line, with per-session fields")
    sv.add_argument("--token", default=None, help="require this bearer token on every /v1/ route (default: $RTAVATAR_TOKEN; "
                                                  "needed to bind beyond loopback)")
    sv.add_argument("--allowed-origin", action="append", default=[],
                    help="a web page origin (scheme://host:port) allowed to drive the server besides its own and loopback pages (repeatable)")
    sv.set_defaults(func=cmd_serve)

    ex = sub.add_parser("export", help="a self-contained inference checkpoint (float16, no optimizer state): what the package ships")
    ex.add_argument("--checkpoint", required=True, help="teacher, distill or eft run (or checkpoint directory)")
    ex.add_argument("--out", required=True, help="directory to write (its files are replaced)")
    ex.add_argument("--fp32", action="store_true", help="keep float32 weights (twice the size)")
    ex.add_argument("--prior", default=None, choices=["motion", "reference"],
                    help="EFT student: the prior video its one step starts from (default: the run's own)")
    ex.add_argument("--motion", default=None, help="a `train motion` run (or motion.safetensors) to ship with it: paste mode warp "
                    "then moves the photo's lips and jaw by its offsets")
    ex.add_argument("--motion-gain", type=_float(0.1, 5.0), default=None,
                    help="scale of the MotionNet's offsets (default: from the run's held-out validation, 1 / predicted-to-real gap std)")
    ex.add_argument("--motion-width-gain", type=_float(0.1, 5.0), default=None,
                    help="the MotionNet's sideways lip offsets x this as well (default: from the run's held-out validation, "
                    "1 / predicted-to-real width std)")
    ex.add_argument("--voice-gate", action=argparse.BooleanOptionalAction, default=None,
                    help="rest the MotionNet's mouth in every pause by silero-vad's speech gate (needs silero-vad; default: the run's "
                    "setting, off; docs/RESULTS.md measures the trade)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_export)

    x = sub.add_parser("export-onnx", help="the denoiser (reference cache as inputs) and the VAE decoder as ONNX, checked with onnxruntime")
    xs = x.add_mutually_exclusive_group()
    xs.add_argument("--checkpoint", default=None, help="teacher, distill or eft run")
    xs.add_argument("--config", default=None, choices=["tiny", "base", "paper"], help="random weights of a size preset")
    x.add_argument("--out", required=True, help="directory for denoiser.onnx, decoder.onnx, export.json")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_export_onnx)

    t = sub.add_parser("train", help="train a stage: vae, teacher, syncnet, distill, eft, motion")
    t.add_argument("stage", choices=["vae", "teacher", "syncnet", "distill", "eft", "motion"])
    t.add_argument("--config", default=None, help="YAML/JSON stage config, or a size preset (tiny, base, paper)")
    t.add_argument("--data", required=True, help="dataset directory (docs/DATA.md); motion: prepared real video, several joined by commas")
    t.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from the run's newest intact checkpoint")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run's checkpoints and log and start over")
    t.add_argument("--steps", type=_positive_int, default=None, help="override train.steps")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="override train.batch_size (global)")
    t.add_argument("--vae", default="", help="teacher: VAE run or checkpoint directory")
    t.add_argument("--init-from", default="", help="teacher / distill: warm-start a new run from another run of the same stage")
    t.add_argument("--teacher", default="", help="distill: teacher run or checkpoint directory")
    t.add_argument("--student", default="", help="eft: distill run or checkpoint directory, or an exported / shipped model (e.g. photo-v8) to fine-tune")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        result = args.func(args)
    except KeyboardInterrupt:  # the user's own Ctrl-C: said, not an error
        log.warning("interrupted")
        return 130
    except (RTAvatarError, ValueError, OSError) as e:  # what a user can cause; a bug (any other type) shows its traceback
        if args.debug:
            log.exception("%s", e)
        else:
            log.error("%s", " ".join(str(e).split()) or type(e).__name__)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
