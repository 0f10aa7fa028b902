"""Data-parallel training (``torchrun -m brainxai train``): two gloo processes take the step one process takes.

The exactness check needs a setting where two half-batches give the same step as their union: a model
without BatchNorm (per-process batch statistics) or dropout (per-process masks), no augmentation, and
a training split that the two processes share without padding. ``ddp-test-net`` is that model,
registered here (and in the spawned processes, which import this module).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models import list_models
from brainxai.models.registry import ModelConfig, register_model, unregister_model
from brainxai.training import distributed
from brainxai.training.trainer import TrainConfig, Trainer

CLASS_DIRS = ("glioma", "meningioma", "notumor", "pituitary")
TEST_MODEL = "ddp-test-net"


def _register_test_model() -> None:
    """Registers ``ddp-test-net`` (here and in each spawned process) unless it is registered already."""
    if TEST_MODEL in list_models(output=None):
        return

    @register_model(
        ModelConfig(
            name=TEST_MODEL,
            preprocess=PreprocessConfig(img_size=32, channels=1, normalize="unit", crop=True),
            target_layer="features.0",
            stages=(("head",), ("features",)),
            description="test only: conv + linear, no BatchNorm, no dropout",
            supports_lrp=False,
        )
    )
    def _ddp_test_net(num_classes: int = 4, pretrained: bool = False, img_size: int = 32) -> nn.Module:
        return _Net(num_classes)


@pytest.fixture(autouse=True)
def _test_model() -> Iterator[None]:
    """The test model exists only while a test of this file runs (the registry is process-wide)."""
    _register_test_model()
    yield
    unregister_model(TEST_MODEL)


class _Net(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(6 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture()
def small_training(mri_root: Path, tmp_path: Path) -> Path:
    """4 real Training images per class: 12 to train on (6 per process), 4 to validate."""
    root = tmp_path / "data"
    for cls in CLASS_DIRS:
        (root / "Training" / cls).mkdir(parents=True)
        for f in sorted((mri_root / "Training" / cls).glob("*.jpg"))[:4]:
            shutil.copy(f, root / "Training" / cls / f.name)
    return root


def _config(data: Path, out: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        data=str(data),
        model=TEST_MODEL,
        out=str(out),
        epochs=2,
        stop_after=1,
        batch_size=12,
        lr=1e-2,
        val_fraction=0.25,
        augment="none",
        lr_schedule="cosine",
        pretrained=False,
        seed=3,
        device="cpu",
        cache_dir=None,
        progress=False,
    )
    return TrainConfig(**(base | kw))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _record_writes(module: Any) -> list[str]:
    """Makes ``module``'s writers (checkpoint, atomic writes) record each path they write, in the list returned."""
    writes: list[str] = []

    def recording(fn: Any) -> Any:
        def inner(path: Any, *args: Any, **kwargs: Any) -> Any:
            writes.append(str(path))
            return fn(path, *args, **kwargs)

        return inner

    for name in ("save_checkpoint", "atomic_write", "atomic_write_text"):
        setattr(module, name, recording(getattr(module, name)))
    return writes


def _worker(rank: int, world: int, port: int, config: dict[str, Any], log_dir: str) -> None:
    """One torchrun-like process: the environment torchrun sets, then the real trainer; records its writes."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    _register_test_model()
    from brainxai.training import trainer as trainer_mod

    writes = _record_writes(trainer_mod)
    result = trainer_mod.Trainer(TrainConfig(**config)).fit()
    Path(log_dir, f"rank{rank}.json").write_text(json.dumps({"writes": writes, "n_train": result.extra["n_train"]}))


def test_two_gloo_processes_take_the_single_process_step_and_only_rank0_writes(
    small_training: Path, tmp_path: Path
) -> None:
    dist_out, logs = tmp_path / "ddp", tmp_path / "logs"
    logs.mkdir()
    config = _config(small_training, dist_out, batch_size=6).to_dict()  # 6 per process = 12 in all
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), config, str(logs)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["n_train"] == rank1["n_train"] == 12
    assert rank1["writes"] == []  # rank 1 trained, but wrote nothing
    assert {Path(p).name for p in rank0["writes"]} >= {"best", "last.pt", "history.json", "best.json"}
    meta = json.loads((dist_out / "best.json").read_text())
    assert meta["recipe"]["world_size"] == 2 and len(meta["history"]) == 1

    single = Trainer(_config(small_training, tmp_path / "single")).fit()  # one process, the combined batch of 12
    assert single.extra["n_train"] == 12
    ddp_w, one_w = load_file(dist_out / "best.safetensors"), load_file(single.checkpoint)
    assert ddp_w.keys() == one_w.keys()
    torch.manual_seed(3)  # the trainer's seed: its initial weights
    init = _Net(4)  # the step must have moved the weights, or equality would prove nothing
    for key in ddp_w:
        torch.testing.assert_close(ddp_w[key], one_w[key], atol=1e-6, rtol=0)
    assert max(float((ddp_w[k] - one_w[k]).abs().max()) for k in ddp_w) <= 1e-6
    assert not all(torch.equal(ddp_w[k], v) for k, v in init.state_dict().items() if k in ddp_w)

    # --resume across world sizes: the 2-process run's last.pt continues in one process.
    resumed = Trainer(_config(small_training, dist_out, stop_after=None), resume=True).fit()
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.history[0] == meta["history"][0]


def test_not_distributed_is_a_no_op() -> None:
    ctx, device = distributed.init_from_env("cpu")
    assert (ctx.enabled, ctx.is_main, device.type) == (False, True, "cpu")
    model = nn.Linear(2, 2)
    assert distributed.wrap(model, ctx, device) is model and distributed.unwrap(model) is model
    assert distributed.mean_over_ranks([1.5, 2.0], ctx) == [1.5, 2.0] == distributed.from_main([1.5, 2.0], ctx)


def test_train_sampler_splits_each_epoch_into_disjoint_seeded_shares() -> None:
    data = torch.utils.data.TensorDataset(torch.arange(12))
    shares = [
        list(distributed.train_sampler(data, distributed.DistContext(rank=r, world_size=2), seed=5, epoch=0))
        for r in (0, 1)
    ]
    assert sorted(shares[0] + shares[1]) == list(range(12)) and len(shares[0]) == 6
    again = list(distributed.train_sampler(data, distributed.DistContext(rank=0, world_size=2), seed=5, epoch=0))
    other = list(distributed.train_sampler(data, distributed.DistContext(rank=0, world_size=2), seed=5, epoch=1))
    assert again == shares[0] and other != shares[0]


def test_shard_matches_the_sampler_and_pads_to_equal_shares() -> None:
    order = np.array([7, 3, 9, 1, 4])
    shares = [distributed.shard(order, distributed.DistContext(rank=r, world_size=2)) for r in (0, 1)]
    assert [s.tolist() for s in shares] == [[7, 9, 4], [3, 1, 7]]  # 5 padded to 6 by repeating the first
    assert distributed.shard(order, distributed.DistContext()) is order


def test_python_dash_m_brainxai_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "brainxai", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "--batch-size" in out.stdout


def _seg_worker(rank: int, world: int, port: int, data: str, out: str, log_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from brainxai.training import segmentation as seg

    writes = _record_writes(seg)
    config = seg.SegTrainConfig(
        data=data, out=out, img_size=64, epochs=2, batch_size=2, val_fraction=0.34, device="cpu", cache_dir=None,
        progress=False,
    )  # fmt: skip
    result = seg.train_segmenter(config)
    Path(log_dir, f"seg{rank}.json").write_text(json.dumps({"writes": writes, "epochs": len(result.history)}))


@pytest.mark.slow
def test_segmentation_trainer_under_two_gloo_processes_writes_on_rank0_only(tmp_path: Path) -> None:
    from test_segmentation import _write_folder  # the segmentation tests' synthetic data set

    data, out, logs = _write_folder(tmp_path / "segdata"), tmp_path / "segrun", tmp_path / "logs"
    logs.mkdir()
    args = (2, _free_port(), str(data), str(out), str(logs))
    torch.multiprocessing.spawn(_seg_worker, args=args, nprocs=2, join=True)
    rank0, rank1 = (json.loads((logs / f"seg{r}.json").read_text()) for r in (0, 1))
    assert rank0["epochs"] == rank1["epochs"] == 2 and rank1["writes"] == []
    assert {Path(p).name for p in rank0["writes"]} >= {"best", "last.pt", "history.json"}
    assert len(json.loads((out / "history.json").read_text())) == 2


@pytest.mark.slow
def test_torchrun_two_processes_train_from_the_command_line(small_training: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "-m", "brainxai", "train"]
    cmd += ["--data", str(small_training), "--model", "cnn-lstm", "--out", str(out), "--epochs", "1"]
    cmd += ["--batch-size", "6", "--device", "cpu", "--lr-schedule", "cosine", "--val-fraction", "0.25"]
    done = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "best.json").read_text())
    assert meta["recipe"]["world_size"] == 2 and np.isfinite(meta["history"][0]["train_loss"])
    assert (out / "last.pt").is_file() and "temperature" in meta
