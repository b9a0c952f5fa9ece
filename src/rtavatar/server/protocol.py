"""The WebSocket protocol for programs (docs/PROTOCOL.md): JSON control messages, binary
PCM in, binary frames out. Shared by the server (`rtavatar.server.app`) and the client
(`rtavatar.client`)."""

from __future__ import annotations

import struct
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from rtavatar.models.conditioning import CONTROL_LIMITS

VERSION = 1
FRAME_MAGIC = b"RTAF"
# magic, index (uint32), pts seconds (float64), JPEG bytes (uint32), PCM samples (uint32); then JPEG, then int16 PCM
FRAME_HEADER = struct.Struct("<4sIdII")
MAX_PORTRAIT_BYTES = 8 << 20


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


Control = Annotated[float, Field(allow_inf_nan=False)]


class Expression(_Msg):
    smile: Control | None = None
    brow_raise: Control | None = None
    eye_open_l: Control | None = None
    eye_open_r: Control | None = None
    yaw: Control | None = None
    pitch: Control | None = None
    roll: Control | None = None

    def values(self) -> dict[str, float]:
        out = {k: v for k, v in self.model_dump().items() if v is not None}
        for k, v in out.items():
            lo, hi = CONTROL_LIMITS[k]
            if not lo <= v <= hi:
                raise ValueError(f"expression {k}={v} is outside [{lo:g}, {hi:g}]")
        return out


class Start(_Msg):
    type: Literal["start"]
    portrait: str = Field(description="base64 of a JPEG/PNG/WebP picture", max_length=MAX_PORTRAIT_BYTES * 4 // 3 + 4)
    align: Literal["face", "center"] = "face"
    paste_back: bool = False
    close_lips: bool = Field(True, description="with paste_back: a photo's parted lips (a smile over teeth) close at rest")
    sample_rate: int = Field(16000, ge=8000, le=48000, description="rate of the int16 mono PCM you will send")
    state: Literal["auto", "speak", "listen", "idle"] = "auto"
    expression: Expression = Field(default_factory=Expression)
    steps: int | None = Field(None, ge=1, le=50)
    seed: int = 0
    live: bool = True  # idle frames at 25 fps while no audio arrives
    jpeg_quality: int = Field(85, ge=10, le=100)


class SetState(_Msg):
    type: Literal["state"]
    state: Literal["auto", "speak", "listen", "idle"]


class SetExpression(_Msg):
    type: Literal["expression"]
    expression: Expression


class Simple(_Msg):
    type: Literal["interrupt", "flush", "end"]


ClientMessage = Annotated[Union[Start, SetState, SetExpression, Simple], Field(discriminator="type")]
CLIENT_MESSAGE = TypeAdapter(ClientMessage)


def pack_frame(index: int, pts: float, jpeg: bytes, audio: np.ndarray) -> bytes:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    return FRAME_HEADER.pack(FRAME_MAGIC, index, pts, len(jpeg), len(audio)) + jpeg + pcm


def unpack_frame(data: bytes) -> tuple[int, float, bytes, np.ndarray]:
    """(index, pts, jpeg bytes, float32 audio) of a binary frame message."""
    if len(data) < FRAME_HEADER.size:
        raise ValueError(f"frame message too short ({len(data)} bytes)")
    magic, index, pts, n_jpeg, n_pcm = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC or len(data) != FRAME_HEADER.size + n_jpeg + 2 * n_pcm:
        raise ValueError("not an rtavatar frame message")
    jpeg = data[FRAME_HEADER.size : FRAME_HEADER.size + n_jpeg]
    pcm = np.frombuffer(data[FRAME_HEADER.size + n_jpeg :], "<i2").astype(np.float32) / 32768.0
    return index, pts, jpeg, pcm
