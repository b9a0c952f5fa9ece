"""Precision of the inference path (LLIA's quantization), chosen per Avatar:

- `int8`: the denoiser's Linear layers (all of its hot path) quantized dynamically to INT8
  (weights per tensor, activations per batch; torch.ao's dynamic quantization, fbgemm/onednn
  kernels on x86). The audio encoder's convs and the VAE stay fp32.
- `bf16`: the denoiser and the VAE decoder run under bf16 autocast (fast where the CPU has
  AVX-512 BF16 / AMX, and on GPUs); latents are returned in fp32.

Frame-level tolerances against fp32 are tested (tests/test_engine.py) and their effect on
the `rtavatar eval` columns is in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from rtavatar.checkpoints import Bundle


def apply_precision(bundle: Bundle, precision: str) -> None:
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks the quantized tensor constructors deprecated
            bundle.net.dit = quantize_dynamic(bundle.net.dit, {nn.Linear}, dtype=torch.qint8)
    elif precision == "bf16":
        bundle.autocast = torch.bfloat16  # read by engine.core.ChunkSampler
    elif precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}")
