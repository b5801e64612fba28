"""Multi-process training with ``torch.distributed``: gloo on the CPU, NCCL on CUDA.

How the alternating updates meet DistributedDataParallel (DDP):

* G and D each get their own DDP wrapper. A DDP wrapper's gradient hooks only arm when its
  ``forward`` runs, so each update calls exactly one wrapper:
  - the critic update runs G **unwrapped** under ``no_grad`` (G receives no gradient) and D
    through its wrapper, once, on the concatenated real and generated batch;
  - the generator update runs G through its wrapper and D **unwrapped** with its parameters
    frozen (``requires_grad_(False)``), so D receives no gradient and its reducer stays idle.
  Every parameter of the wrapped network gets a gradient in each backward, so
  ``find_unused_parameters`` stays off.
* The gradient penalty needs a double backward, which DDP's reducer does not support through its
  own forward. The penalty's forward therefore runs through the **unwrapped** critic and its
  input gradients come from ``torch.autograd.grad(..., inputs=x)``, which runs no parameter
  gradient hooks. The final ``loss.backward()`` reaches each parameter's gradient accumulator
  once, with the sum of the loss and penalty paths, and the armed reducer of the critic's single
  wrapped forward averages that sum across ranks. (tests/gan checks that all ranks hold identical
  weights after training with the penalty on.)

Each rank draws its own data and noise (seeds depend on the rank); rank 0 writes checkpoints and
logs; logged metrics are averaged over ranks. Every rank reads the checkpoint on resume, so the
run directory must be visible to all of them (one machine, or a shared file system).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fdiv.device import resolve_device

__all__ = ["Context", "end_process", "from_environment", "joined", "single"]

_joined = False  # this process joined a process group through from_environment


@dataclass(frozen=True)
class Context:
    """Where this process sits: its rank, the number of processes, its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in a DDP wrapper when distributed, itself otherwise."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def mean(self, values: Tensor) -> Tensor:
        """The element-wise mean of ``values`` over all ranks (a copy)."""
        out = values.detach().clone()
        if self.distributed:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
            out /= self.world_size
        return out

    def all_agree(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank (every rank must call this)."""
        if not self.distributed:
            return ok
        flag = torch.tensor([int(ok)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. until rank 0 has written a checkpoint)."""
        if self.distributed:
            dist.barrier()

    def gather(self, state: Tensor) -> Tensor:
        """Rank-stacked (world_size, n) copy of a 1-D ``state`` of equal length on every rank."""
        if not self.distributed:
            return state.unsqueeze(0).clone()
        # NCCL gathers device tensors; the states are small byte tensors.
        parts = [torch.empty_like(state, device=self.device) for _ in range(self.world_size)]
        dist.all_gather(parts, state.to(self.device))
        return torch.stack([p.cpu() for p in parts])


def single(device: torch.device) -> Context:
    """The context of a plain, one-process run."""
    return Context(0, 1, device)


def from_environment(device: str) -> Context | None:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1), else None.

    ``device`` is the run's device option: ``"auto"`` means this rank's GPU (LOCAL_RANK) when
    CUDA is available, the CPU otherwise. NCCL is used on CUDA, gloo on the CPU.
    """
    global _joined
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        atexit.register(_leave)
        _joined = True
    return Context(dist.get_rank(), dist.get_world_size(), dev)


def _leave() -> None:
    """Destroy the process group this module joined, at exit, for callers that end their
    processes themselves (the CLI ends in :func:`end_process`)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def joined() -> bool:
    """Whether this process joined a process group through :func:`from_environment`."""
    return _joined


def end_process(status: int) -> NoReturn:
    """End a process that joined a process group: leave it, flush, and exit with ``status``
    without interpreter shutdown.

    A gloo process that leaves its group cleanly can still abort (SIGABRT, "terminate called
    without an active exception") in interpreter shutdown, after every atexit handler: measured
    with two ranks, a DDP model and ``destroy_process_group()``, 1 of 40 runs, 0 of 60 when the
    processes ended with ``os._exit`` instead (``torch`` 2.13, this machine). torchrun would
    report a finished run as failed.
    """
    _leave()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
