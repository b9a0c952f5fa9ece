"""Precision of the inference path (LLIA's quantization), chosen per Avatar:

- denoiser `int8`: its Linear layers (all of its hot path) quantized dynamically to INT8
  (weights per tensor, activations per batch; torch.ao's dynamic quantization, fbgemm/onednn
  kernels on x86). The audio encoder's convs stay fp32.
- denoiser `bf16`: bf16 autocast (the way on GPUs; on the 2-core CPU it is slower than fp32
  for this transformer's small matrices, docs/BENCHMARKS.md).
- decoder `bf16`: the VAE decoder's convs under bf16 autocast, channels-last (4.5x faster per
  frame on a CPU with AMX / AVX-512 BF16, docs/BENCHMARKS.md); frames are returned as uint8 as always.

Precision is `"<denoiser>"` or `"<denoiser>+<decoder>"`: "int8", "bf16" (both bf16),
"int8+bf16", "fp32+bf16"; or "auto" (auto_precision: by what the device is measured to run
fastest).

Frame-level tolerances against fp32 are tested (tests/test_engine.py) and their effect on
the `rtavatar eval` columns is in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from rtavatar.checkpoints import Bundle


DENOISER = ("fp32", "int8", "bf16")
DECODER = ("fp32", "bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision(device: str | torch.device = "cpu", flags: set[str] | None = None) -> str:
    """The fastest measured precision for `device` (docs/BENCHMARKS.md): on a CPU the INT8
    denoiser, plus the bf16 decoder only with AMX (2x faster there; without AMX, AVX-512 BF16
    alone makes it slower than fp32); on a GPU bf16 autocast, the usual way, not measured here."""
    if torch.device(device).type == "cuda":
        return "bf16"
    return "int8+bf16" if "amx_bf16" in (cpu_flags() if flags is None else flags) else "int8"


def parse_precision(precision: str) -> tuple[str, str]:
    """'int8' -> ('int8', 'fp32'); 'bf16' -> ('bf16', 'bf16'); 'int8+bf16' -> ('int8', 'bf16')."""
    den, _, dec = precision.partition("+")
    dec = dec or (den if den in DECODER else "fp32")
    if den not in DENOISER or dec not in DECODER:
        raise ValueError(f"unknown precision {precision!r}; use a denoiser precision ({', '.join(DENOISER)}), "
                         f"optionally +decoder ({', '.join(DECODER)}), e.g. int8+bf16")
    return den, dec


def apply_precision(bundle: Bundle, precision: str, device: str | torch.device = "cpu") -> str:
    """Set `bundle` up for `precision` ("auto" resolved for `device`); returns the precision used."""
    if precision == "auto":
        precision = auto_precision(device)
    den, dec = parse_precision(precision)
    if dec == "bf16":
        bundle.decoder_autocast = torch.bfloat16
    if den == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks the quantized tensor constructors deprecated
            bundle.net.dit = quantize_dynamic(bundle.net.dit, {nn.Linear}, dtype=torch.qint8)
    elif den == "bf16":
        bundle.autocast = torch.bfloat16  # read by engine.core.ChunkSampler
    return precision
