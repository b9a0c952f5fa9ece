"""CTranslate2 model files: read and write `model.bin`, and cut a Whisper encoder short.

CTranslate2 runs a Whisper encoder whole and returns only its last layer's output. A shallower
layer's output is had from a copy of the model whose encoder keeps only its first `depth`
layers (CTranslate2 builds as many layers as the file holds); its final layer norm then
applies to that layer's output. The copy is made once from the local model and kept in a cache
directory; nothing is downloaded.

The file layout is CTranslate2's binary version 6 (ctranslate2/specs/model_spec.py `_serialize`):
a version, the spec's name and revision, the variables (name, shape, dtype id, raw bytes) and
the aliases.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rtavatar.errors import RTAvatarError

_LAYER = re.compile(r"encoder/layer_(\d+)/")


@dataclass
class Variable:
    name: str
    shape: tuple[int, ...]
    dtype: int  # CTranslate2's dtype id
    data: bytes


@dataclass
class ModelFile:
    version: int
    spec: str
    revision: int
    variables: list[Variable]
    aliases: list[tuple[str, str]]

    def encoder_layers(self) -> int:
        return len({int(m.group(1)) for v in self.variables if (m := _LAYER.match(v.name))})


def read_model(path: str | Path) -> ModelFile:
    """Parse a CTranslate2 `model.bin`."""
    buf, o = Path(path).read_bytes(), 0

    def take(fmt: str) -> int:
        nonlocal o
        (v,) = struct.unpack_from(fmt, buf, o)
        o += struct.calcsize(fmt)
        return v

    def text() -> str:
        nonlocal o
        n = take("H")
        s = buf[o : o + n - 1].decode()
        o += n
        return s

    try:
        version, spec, revision = take("I"), text(), take("I")
        variables = []
        for _ in range(take("I")):
            name = text()
            shape = tuple(take("I") for _ in range(take("B")))
            dtype, size = take("B"), take("I")
            variables.append(Variable(name, shape, dtype, buf[o : o + size]))
            o += size
        aliases = [(text(), text()) for _ in range(take("I"))]
    except (struct.error, UnicodeDecodeError) as e:
        raise RTAvatarError(f"{path}: not a CTranslate2 model file ({e})") from e
    if o != len(buf):
        raise RTAvatarError(f"{path}: {len(buf) - o} bytes after the model's last entry (not a CTranslate2 model file?)")
    return ModelFile(version, spec, revision, variables, aliases)


def write_model(model: ModelFile, path: str | Path) -> None:
    def text(s: str) -> bytes:
        b = s.encode()
        return struct.pack("H", len(b) + 1) + b + b"\0"

    parts = [struct.pack("I", model.version), text(model.spec), struct.pack("I", model.revision),
             struct.pack("I", len(model.variables))]
    for v in model.variables:
        parts += [text(v.name), struct.pack("B", len(v.shape)), *(struct.pack("I", d) for d in v.shape),
                  struct.pack("B", v.dtype), struct.pack("I", len(v.data)), v.data]
    parts.append(struct.pack("I", len(model.aliases)))
    parts += [text(a) + text(b) for a, b in model.aliases]
    Path(path).write_bytes(b"".join(parts))


def cache_root() -> Path:
    """Where derived model files are kept: $RTAVATAR_CACHE, else ~/.cache/rtavatar."""
    return Path(os.environ.get("RTAVATAR_CACHE", Path.home() / ".cache" / "rtavatar"))


def shallow_whisper(model_dir: str, depth: int) -> str:
    """A copy of the CTranslate2 Whisper model in `model_dir` whose encoder stops after `depth`
    layers, made once under `cache_root()` (keyed by the source's bytes) and reused."""
    src = Path(model_dir) / "model.bin"
    with open(src, "rb") as f:
        key = hashlib.sha1(f.read(1 << 20) + str(src.stat().st_size).encode()).hexdigest()[:12]
    dst = cache_root() / "whisper" / f"{key}-depth{depth}"
    if (dst / "model.bin").is_file():
        return str(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RTAvatarError(f"cannot write the shallow Whisper copy under {dst.parent} ({e}); set RTAVATAR_CACHE to a writable directory") from e
    model = read_model(src)
    layers = model.encoder_layers()
    if not 1 <= depth < layers:
        raise RTAvatarError(f"a Whisper encoder depth must be 1-{layers - 1} for this model ({layers} layers), got {depth}")
    model.variables = [v for v in model.variables if not (m := _LAYER.match(v.name)) or int(m.group(1)) < depth]
    tmp = Path(tempfile.mkdtemp(dir=dst.parent))
    for f in Path(model_dir).iterdir():
        if f.is_file() and f.name != "model.bin":
            shutil.copy(f, tmp / f.name)
    write_model(model, tmp / "model.bin")
    try:
        tmp.rename(dst)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dst)
