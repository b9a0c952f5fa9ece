"""Generated video to files: what the offline commands, the server's `POST /v1/generate` and the
demo share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtavatar import FPS
from rtavatar.engine.avatar import Avatar
from rtavatar.media import VideoWriter


def write_generated(out: str | Path, avatar: Avatar, portrait: Any, audio: Any, **kwargs: Any) -> int:
    """Generate offline (`Avatar.iter_frames` arguments) straight into an mp4, frame by frame;
    returns the frame count."""
    with VideoWriter(out, fps=FPS) as w:
        w.add((), audio)
        for frame in avatar.iter_frames(portrait, audio, **kwargs):
            w.add((frame,))
    return w.frames
