"""The photo renderer's options: one object for every path that composites into a photo (the
Python API, the CLI, `generate`, `bench`, `eval`, the server, the agents). Torch-free: the CLI
imports it to build its arguments without loading torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rtavatar.errors import RTAvatarError

PASTE_MODES = ("warp", "photo", "face")
DEFAULT_PASTE_MODE = "warp"
MAX_HEAD_MOTION = 3.0
MAX_BLINKS = 60.0
DEFAULT_BLINKS = 20.0  # a minute (people at rest: about 17, in conversation about 26: Bentivoglio et al. 1997; realvid/ as dlib counts: 13)


@dataclass(frozen=True)
class PasteOptions:
    """How generated frames become the photo's frames.

    mode: `warp` (default) moves the photo's own lips to the opening the model drew; `photo`
      keeps the photo's pixels wherever the generated face did not move and shows the model's
      mouth; `face` pastes the whole generated face (pictures of the model's own kind).
    head_motion: scale of the seeded head sway, tilt and nod (0: a still head; None: 1, except
      for a live session on a picture over engine.avatar.LIVE_MOTION_PIXELS, where it is off).
    close_lips: lips a photo shows parted (a smile over teeth) close at rest; False keeps them.
    blinks: blinks a minute (0: none).
    """

    mode: str = DEFAULT_PASTE_MODE
    head_motion: float | None = None
    close_lips: bool = True
    blinks: float = DEFAULT_BLINKS

    def __post_init__(self) -> None:
        if self.mode not in PASTE_MODES:
            raise RTAvatarError(f"unknown paste mode {self.mode!r}; use {' or '.join(PASTE_MODES)}")
        if self.head_motion is not None and not 0 <= self.head_motion <= MAX_HEAD_MOTION:
            raise RTAvatarError(f"head_motion must be in [0, {MAX_HEAD_MOTION:g}], got {self.head_motion}")
        if not 0 <= self.blinks <= MAX_BLINKS:
            raise RTAvatarError(f"blinks must be in [0, {MAX_BLINKS:g}] a minute, got {self.blinks}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
