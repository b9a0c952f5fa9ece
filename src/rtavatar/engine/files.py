"""Generated video to files: what the offline commands, the server's `POST /v1/generate` and the
demo share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rtavatar import FPS
from rtavatar.engine.avatar import Avatar
from rtavatar.engine.offline import Cancelled
from rtavatar.media import VideoWriter


def write_generated(out: str | Path, avatar: Avatar, portrait: Any, audio: Any,
                    cancelled: Callable[[], bool] | None = None, **kwargs: Any) -> int:
    """Generate offline (`Avatar.iter_frames` arguments) straight into an mp4, frame by frame;
    returns the frame count. `cancelled()` is asked before each chunk and frame: when it says
    so, engine.offline.Cancelled is raised and no file is left."""
    with VideoWriter(out, fps=FPS) as w:
        w.add((), audio)
        for frame in avatar.iter_frames(portrait, audio, cancelled=cancelled, **kwargs):
            if cancelled is not None and cancelled():
                raise Cancelled("generation cancelled")
            w.add((frame,))
    return w.frames
