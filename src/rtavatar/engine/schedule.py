"""The variable-length chunk schedule (LLIA): short chunks where latency matters, long ones
for throughput.

The first chunk of a session (and the first after an interrupt or a flush) has `first`
frames and does not wait for its full audio look-ahead: audio later than `first_lookahead_ms`
past its last frame counts as silence (speech onsets are near-silent, and this is what takes
the time to first frame from ~190 ms to ~100 ms on 2 CPU cores; docs/BENCHMARKS.md). Chunks
then grow through `growth` to `steady` frames (default: the longest chunk the model was
trained on). A state change (set_state, or the causal detector switching between speak and
quiet) starts the growth again, so the new state shows within one short chunk.

`idle` (off by default) caps chunks while the face is not speaking: idle frames need only
25 fps, and speech that arrives waits for the chunk in flight to leave the denoiser and the
decoder, so a voice agent's face (integrations/core.py) keeps idle chunks short.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ChunkSchedule:
    first: int = 1
    growth: tuple[int, ...] = (2, 4)
    steady: int = 0  # 0: the model's max_new
    first_lookahead_ms: float = 20.0
    motion: int = -1  # context frames carried across chunks; -1: the model's max_motion
    idle: int = 0  # the longest chunk while not speaking (0: no cap)

    def _ladder(self, max_new: int) -> list[int]:
        return [self.first, *self.growth, self.steady or max_new]

    def sizes(self, max_new: int) -> list[int]:
        out = [*self._ladder(max_new), *([self.idle] if self.idle else [])]
        if any(not 1 <= s <= max_new for s in out):
            raise ValueError(f"chunk sizes {out} must lie in [1, {max_new}] (the longest chunk the model was trained on)")
        return out

    def length(self, index: int, max_new: int) -> int:
        """Frames in the `index`-th chunk since the last (re)start."""
        self.sizes(max_new)  # validates
        s = self._ladder(max_new)
        return s[min(index, len(s) - 1)]
