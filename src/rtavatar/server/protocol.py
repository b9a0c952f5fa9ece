"""The WebSocket protocol for programs (docs/PROTOCOL.md): JSON control messages, binary
PCM in, binary frames out. Shared by the server (`rtavatar.server.app`) and the client
(`rtavatar.client`)."""

from __future__ import annotations

import struct
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from rtavatar.models.conditioning import CONTROL_LIMITS
from rtavatar.photo.options import DEFAULT_BLINKS, DEFAULT_PASTE_MODE, MAX_BLINKS, MAX_HEAD_MOTION, PasteOptions

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


class Paste(_Msg):
    """The photo renderer's options (photo/options.PasteOptions): one model, the same defaults, on
    the WebSocket `start`, the WebRTC offer and `/v1/generate` (a JSON form field there)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    back: bool = Field(True, description="composite into the picture (false: the model's aligned face crop)")
    mode: Literal["warp", "photo", "face"] = DEFAULT_PASTE_MODE
    head_motion: float | None = Field(None, ge=0, le=MAX_HEAD_MOTION, allow_inf_nan=False,
                                      description="head sway scale (0: still; null: 1, or 0 on pictures over 640x480 px)")
    close_lips: bool = Field(True, description="a photo's parted lips (a smile over teeth) close at rest")
    blinks: float = Field(DEFAULT_BLINKS, ge=0, le=MAX_BLINKS, allow_inf_nan=False, description="blinks a minute")

    def options(self) -> PasteOptions | None:
        """As the engine takes them (None: no paste-back)."""
        if not self.back:
            return None
        return PasteOptions(mode=self.mode, head_motion=self.head_motion, close_lips=self.close_lips, blinks=self.blinks)


class Offer(_Msg):
    """The page's WebRTC offer (`POST /v1/webrtc/offer`)."""

    sdp: str = Field(max_length=1 << 20)
    type: Literal["offer"]
    portrait: str = Field("", description="'bundled:NAME' or base64 of a picture",
                          max_length=MAX_PORTRAIT_BYTES * 4 // 3 + 4)
    align: Literal["face", "center"] = "face"
    paste: Paste = Field(default_factory=Paste)


class Start(_Msg):
    type: Literal["start"]
    portrait: str = Field(description="base64 of a JPEG/PNG/WebP picture", max_length=MAX_PORTRAIT_BYTES * 4 // 3 + 4)
    align: Literal["face", "center"] = "face"
    paste: Paste = Field(default_factory=Paste)
    sample_rate: int = Field(16000, ge=8000, le=48000, description="rate of the int16 mono PCM you will send")
    state: Literal["auto", "speak", "listen", "idle"] = "auto"
    expression: Expression = Field(default_factory=Expression)
    steps: StrictInt | None = Field(None, ge=1, le=50)
    seed: StrictInt = Field(0, ge=0, lt=1 << 63)
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
