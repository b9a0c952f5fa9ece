"""ONNX export of the inference hot path, and an onnxruntime backend for Sessions.

`export_onnx` writes two graphs (`pip install 'rtavatar[onnx]'`: onnx + onnxscript for the
exporter; onnxruntime to run them):

- `denoiser.onnx`: the DiT with the reference cache as inputs, (x, t, audio, state, controls
  [, guidance], ref_tokens, ref_k_0, ref_v_0, ...) -> v, any number of frames. A distilled
  student takes its guidance scale as an input; a teacher's graph is the audio-conditioned
  pass only (CFG's unconditional pass is not exported), so the onnxruntime backend runs
  students.
- `decoder.onnx`: the VAE decoder, latents (N, C, h, w) -> images in [-1, 1].

Each is checked against PyTorch on random inputs with onnxruntime; the max abs differences
go into `export.json` beside them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rtavatar.checkpoints import Bundle
from rtavatar.errors import RTAvatarError
from rtavatar.models.conditioning import Conditioning
from rtavatar.models.dit import DiT, ReferenceCache

log = logging.getLogger(__name__)


class _Denoiser(nn.Module):
    def __init__(self, dit: DiT, guidance: bool) -> None:
        super().__init__()
        self.dit, self.guidance = dit, guidance

    def forward(self, x: Tensor, t: Tensor, audio: Tensor, state: Tensor, controls: Tensor, rest: list[Tensor]) -> Tensor:
        g, rest = (rest[0], rest[1:]) if self.guidance else (None, rest)
        tokens, kv = rest[0], rest[1:]
        cache = ReferenceCache([(kv[2 * i], kv[2 * i + 1]) for i in range(len(kv) // 2)], tokens)
        return self.dit(x, t, Conditioning(audio=audio, state=state, controls=controls, guidance=g, ref_cache=cache))


class _Decoder(nn.Module):
    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, z: Tensor) -> Tensor:
        return self.codec.decode(z)


def _example(bundle: Bundle, frames: int) -> tuple[list[Tensor], list[str]]:
    d = bundle.cfg.net.dit
    g = torch.Generator().manual_seed(0)
    ref = bundle.net.dit.encode_reference(torch.randn(1, d.latent_channels, d.latent_size, d.latent_size, generator=g))
    args = [torch.randn(1, frames, d.latent_channels, d.latent_size, d.latent_size, generator=g), torch.rand(1, frames, generator=g),
            torch.randn(1, frames, 2 * d.audio_window + 1, d.audio_dim, generator=g), torch.zeros(1, frames, dtype=torch.long),
            torch.randn(1, frames, d.n_controls, generator=g) * 0.3]
    names = ["x", "t", "audio", "state", "controls"]
    if bundle.is_student:
        args.append(torch.tensor([2.0]))
        names.append("guidance")
    args.append(ref.tokens)
    names.append("ref_tokens")
    for i, (k, v) in enumerate(ref.kv):
        args += [k, v]
        names += [f"ref_k_{i}", f"ref_v_{i}"]
    return args, names


def _ort_session(path: Path):  # noqa: ANN202
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RTAvatarError("the onnxruntime backend needs onnxruntime: pip install 'rtavatar[onnx]'") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@torch.no_grad()
def export_onnx(bundle: Bundle, out: str | Path, frames: int = 4) -> dict[str, Any]:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RTAvatarError("ONNX export needs onnx and onnxscript: pip install 'rtavatar[onnx]'") from e
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = bundle.net.eval()
    den = _Denoiser(net.dit, bundle.is_student).eval()
    args, names = _example(bundle, frames)
    f = torch.export.Dim("frames", min=1, max=64)
    dyn = ({1: f}, {1: f}, {1: f}, {1: f}, {1: f}, [None for _ in args[5:]])
    torch.onnx.export(den, (*args[:5], list(args[5:])), str(out / "denoiser.onnx"), input_names=names, output_names=["v"],
                      dynamic_shapes=dyn, dynamo=True, external_data=False)
    dec = _Decoder(bundle.codec).eval()
    d = bundle.cfg.net.dit
    z = torch.randn(3, d.latent_channels, d.latent_size, d.latent_size, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(dec, (z,), str(out / "decoder.onnx"), input_names=["z"], output_names=["image"],
                      dynamic_shapes=({0: torch.export.Dim("n", min=1, max=64)},), dynamo=True, external_data=False)
    # Check against PyTorch, at another frame count than the export's.
    args2, _ = _example(bundle, frames + 3)
    ref_v = den(*args2[:5], list(args2[5:])).numpy()
    got = _ort_session(out / "denoiser.onnx").run(None, {n: a.numpy() for n, a in zip(names, args2)})[0]
    z2 = torch.randn(5, *z.shape[1:], generator=torch.Generator().manual_seed(2))
    ref_img = dec(z2).numpy()
    got_img = _ort_session(out / "decoder.onnx").run(None, {"z": z2.numpy()})[0]
    report = {"denoiser_max_abs_diff": float(np.abs(got - ref_v).max()), "denoiser_output_std": float(ref_v.std()),
              "decoder_max_abs_diff": float(np.abs(got_img - ref_img).max()), "inputs": names,
              "student": bundle.is_student, "resolution": bundle.resolution}
    (out / "export.json").write_text(json.dumps(report, indent=2))
    return {"out": str(out), **{k: v for k, v in report.items() if k != "inputs"}}


class OnnxRuntime:
    """Runs a bundle's denoiser and VAE decoder through onnxruntime (engine.core uses it)."""

    def __init__(self, bundle: Bundle, directory: str | Path) -> None:
        if not bundle.is_student:
            raise RTAvatarError("the onnxruntime backend runs distilled students (the teacher's CFG pass is not exported)")
        d = Path(directory)
        self.dit_sess, self.dec_sess = _ort_session(d / "denoiser.onnx"), _ort_session(d / "decoder.onnx")
        self.names = [i.name for i in self.dit_sess.get_inputs()]

    def dit(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        c = cond.ref_cache
        feed = {"x": x, "t": t, "audio": cond.audio, "state": cond.state, "controls": cond.controls, "guidance": cond.guidance,
                "ref_tokens": c.tokens}  # type: ignore[union-attr]
        for i, (k, v) in enumerate(c.kv):  # type: ignore[union-attr]
            feed[f"ref_k_{i}"], feed[f"ref_v_{i}"] = k, v
        out = self.dit_sess.run(None, {n: feed[n].detach().cpu().numpy() for n in self.names})[0]
        return torch.from_numpy(out)

    def decode(self, z: Tensor) -> Tensor:
        return torch.from_numpy(self.dec_sess.run(None, {"z": z.detach().cpu().float().numpy()})[0])


def use_onnxruntime(avatar: Any, directory: str | Path | None = None) -> None:
    """Switch an Avatar to onnxruntime: export into `directory` (a temporary one by default) and load."""
    import tempfile

    d = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="rtavatar-onnx-"))
    if not (d / "denoiser.onnx").is_file():
        export_onnx(avatar.bundle, d)
    avatar.bundle.runtime = OnnxRuntime(avatar.bundle, d)
