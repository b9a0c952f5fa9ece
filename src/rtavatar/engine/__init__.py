"""The real-time engine: Avatar (a loaded model), Session (one live stream), the chunk
schedule, portrait alignment and paste-back, quantization and the benchmark."""

from rtavatar.engine.avatar import Avatar
from rtavatar.photo.align import Portrait
from rtavatar.engine.schedule import ChunkSchedule
from rtavatar.engine.session import Frame, Session

__all__ = ["Avatar", "ChunkSchedule", "Frame", "Portrait", "Session"]
