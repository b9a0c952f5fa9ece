"""`rtavatar generate`: portrait + audio file -> mp4, a thin offline use of the engine.

The video is written chunk by chunk as it is decoded (engine/files.py: media.VideoWriter), so
memory stays flat however long the audio is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rtavatar import FPS
from rtavatar.engine import Avatar
from rtavatar.engine.files import write_generated
from rtavatar.media import read_audio, validate_audio
from rtavatar.models.conditioning import parse_expression
from rtavatar.photo import PasteOptions


def generate_file(checkpoint: str | Path | None, image: str | Path, audio_path: str | Path, out: str | Path, *, steps: int | None = None,
                  state: str = "auto", expression: str | None = None, guidance: float | None = None, seed: int = 0,
                  align: str = "face", paste: PasteOptions | None = PasteOptions(), precision: str = "fp32") -> dict[str, Any]:
    """`paste`: the photo renderer's options (None: write the aligned face crop)."""
    t0 = time.perf_counter()
    expr = parse_expression(expression)
    avatar = Avatar.load(checkpoint, precision=precision) if checkpoint else Avatar.from_pretrained(precision=precision)
    sampler = avatar.sampler(steps, guidance)  # validates steps / guidance before any work
    portrait = avatar.portrait(image, align)
    audio = validate_audio(read_audio(audio_path), 16_000, name=str(audio_path))
    t1 = time.perf_counter()
    n = write_generated(out, avatar, portrait, audio, steps=steps, guidance=guidance, state=state, expression=expr, seed=seed,
                        paste=paste, progress=True)
    t2 = time.perf_counter()
    return {"out": str(out), "frames": n, "seconds": round(n / FPS, 2), "steps": sampler.sampling.steps,
            "generate_seconds": round(t2 - t1, 2), "fps": round(n / max(t2 - t1, 1e-9), 2),
            "total_seconds": round(time.perf_counter() - t0, 2)}
