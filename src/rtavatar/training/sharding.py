"""Fully sharded data parallel (PyTorch FSDP2, `fully_shard`) for models too big for DDP.

With `train.fsdp: true` and more than one process, each block of every `nn.ModuleList`
(the DiT's transformer blocks) becomes its own FSDP unit and the root module holds the rest:
parameters, gradients and optimizer state are split across processes and each block's
weights are gathered just for its forward/backward. A module that runs its weights outside
`forward` lists those methods in `fsdp_methods` (the DiT block's `reference_kv`), so they
gather too.

Checkpoints stay ordinary: the full weights (gathered) in model.safetensors, and the
optimizer state in the name-keyed "full" format of torch.distributed.checkpoint, so a run
saved sharded can be resumed sharded or unsharded and loaded by `generate` as usual.
The EMA copy is kept unsharded on every process (one extra all-gather per step): simple, and
for the paper config (a few hundred million parameters) a full fp32 copy per GPU is small.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

OPTIMIZER_FORMAT = "full"  # marks state.pt optimizer states saved by name (get_optimizer_state_dict)


def shard_model(model: nn.Module) -> None:
    """Apply FSDP2 in place: blocks of ModuleLists (that own parameters) first, then the root."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for blocks in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
        for block in blocks:
            if any(True for _ in block.parameters()):
                fully_shard(block)
                for name in getattr(block, "fsdp_methods", ()):
                    register_fsdp_forward_method(block, name)
    fully_shard(model)


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_tensor(t: Tensor) -> Tensor:
    """A DTensor gathered to a plain tensor (collective); plain tensors pass through."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, Tensor]:
    """The gathered weights (collective: every process must call; rank 0 gets them)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options())


def full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter name (collective; rank 0 gets it)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=_options())


def load_full_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of full_optimizer_state; every process passes the whole state (read from disk).
    Not strict: a parameter that never got a gradient (the teacher's guidance embedding) has
    no optimizer state to restore."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    for group in opt.param_groups:  # the saved groups carry the lr scheduler's initial_lr
        group.setdefault("initial_lr", group["lr"])
    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True, strict=False))
