"""Data-parallel training across processes: ``torchrun --nproc-per-node N -m brainxai train ...``.

The trainers call these helpers; with one process (no ``torchrun``) every helper is a no-op, so a
plain ``brainxai train`` runs exactly as before.

- Process group: from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``); NCCL when training on CUDA (one GPU per process,
  ``cuda:LOCAL_RANK``), gloo on the CPU. Across nodes, torchrun's rendezvous flags (``--nnodes``,
  ``--rdzv-backend c10d --rdzv-endpoint HOST:PORT``) set the same variables.
- Data: :func:`train_sampler` is a ``DistributedSampler`` over the seeded training split; each process
  takes ``1 / world_size`` of every epoch's permutation (seeded with the run's seed, reshuffled by
  ``set_epoch``), so ``--batch-size`` is per process and the global batch is ``world_size`` times it.
  The learning rate is not rescaled.
- Model: :func:`wrap` puts the model in ``DistributedDataParallel``, which averages the gradients
  over all processes (an all-reduce during ``backward``) so every replica takes the same step.
  BatchNorm: converted to ``SyncBatchNorm`` on CUDA (statistics over the global batch). On the CPU
  (gloo) it stays per process: each process normalises with its own batch's statistics, and DDP
  copies rank 0's running statistics to the others before each forward pass.
- Outputs: only rank 0 (:attr:`DistContext.is_main`) writes checkpoints, history and logs; the other
  ranks log warnings only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from brainxai.util.device import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: Global rank (0 is the main process).
        world_size: Number of processes (1: not distributed).
        local_rank: Rank on this node (its GPU index under NCCL).
        backend: ``"nccl"``, ``"gloo"``, or None when not distributed.
        owns_group: Whether :func:`init_from_env` created the process group (and :func:`shutdown` ends it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs (rank 0)."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> tuple[DistContext, torch.device]:
    """Joins the process group torchrun described in the environment and picks this process's device.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised and the device is
    :func:`~brainxai.util.device.resolve_device`'s. A process group that already exists (a caller
    set it up) is used as it is.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` (``cuda:N`` is refused when distributed: each process takes
            ``cuda:LOCAL_RANK``).

    Returns:
        The context and the device this process trains on.
    """
    if dist.is_available() and dist.is_initialized():
        backend = str(dist.get_backend())
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), _local_rank(), backend, owns_group=False)
        quiet_unless_main(ctx)
        return ctx, _device_for(ctx, device)
    if not launched_by_torchrun():
        return DistContext(), resolve_device(device)
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but CUDA is not available")
    if device.startswith("cuda:"):
        raise ValueError("under torchrun each process takes cuda:LOCAL_RANK; use --device cuda or auto")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(_local_rank())
    dist.init_process_group(backend=backend)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), _local_rank(), backend, owns_group=True)
    quiet_unless_main(ctx)
    logger.info("distributed training: %d processes, backend %s", ctx.world_size, backend)
    return ctx, _device_for(ctx, device)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _device_for(ctx: DistContext, device: str) -> torch.device:
    if ctx.backend == "nccl":
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu") if ctx.enabled else resolve_device(device)


def quiet_unless_main(ctx: DistContext) -> None:
    """On ranks other than 0, keeps brainxai's log to warnings (rank 0 logs the run once)."""
    if not ctx.is_main:
        logging.getLogger("brainxai").setLevel(logging.WARNING)


def train_sampler(dataset: Dataset, ctx: DistContext, seed: int, epoch: int) -> DistributedSampler:
    """This process's share of the epoch's seeded permutation of ``dataset`` (see the module docstring).

    Every process draws the same permutation (``seed + epoch``) and takes every ``world_size``-th
    index from its rank on; the last indices are repeated so each process has as many batches.
    """
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return sampler


def shard(order: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This process's share of an epoch's index order, for trainers that batch indices themselves.

    As :func:`train_sampler` does: ``order`` (the same on every process) is padded by repeating its
    start to a multiple of ``world_size``, and each process takes every ``world_size``-th index from
    its rank on, so every process runs as many batches.
    """
    if not ctx.enabled:
        return order
    padded = np.resize(order, math.ceil(len(order) / ctx.world_size) * ctx.world_size)
    return padded[ctx.rank :: ctx.world_size]


def wrap(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (SyncBatchNorm on CUDA); unchanged when not distributed.

    Build it after freezing parameters (DDP registers its gradient hooks on the parameters that require
    a gradient at construction): a phase that unfreezes layers wraps again.
    """
    if not ctx.enabled:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (what is saved and explained)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_over_ranks(values: Sequence[float], ctx: DistContext) -> list[float]:
    """The mean of each value over all processes (e.g. each process's training loss on its shard)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) / ctx.world_size for v in t]


def from_main(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Rank 0's values on every process, so that decisions taken on them (early stopping, the learning-rate
    schedule) are the same everywhere even when GPUs compute a validation loss a rounding error apart."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.broadcast(t, src=0)
    return [float(v) for v in t]


def barrier(ctx: DistContext) -> None:
    """Waits for every process (no-op when not distributed)."""
    if ctx.enabled:
        dist.barrier()


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. filling a decode cache); the others run it after, reading its results."""
    if not ctx.is_main:
        barrier(ctx)
    yield
    if ctx.is_main:
        barrier(ctx)


def shutdown(ctx: DistContext) -> None:
    """Ends the process group if :func:`init_from_env` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
