"""Helpers shared by the web benchmarks: a checkpoint to serve, a user, a started server."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from brainxai.web.process import ServerProcess, add_user

USER, PASSWORD = "bench", "bench-password-123"


def random_checkpoint(folder: Path) -> Path:
    """An untrained efficientnet-lite0 checkpoint (serving cost is that of a trained one)."""
    import torch

    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint

    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", pretrained=True)
    cfg = model.brainxai_config
    path = folder / "random"
    save_checkpoint(
        path, model, CheckpointMeta(model="efficientnet-lite0", classes=list(cfg.classes), preprocess=cfg.preprocess)
    )
    return path


def prepare(data_dir: Path | None, checkpoint: Path | None, use_random: bool) -> tuple[Path, Path | None, Path]:
    """Data dir (a fresh temp one by default), checkpoint, and a work folder; creates the bench user."""
    work = Path(tempfile.mkdtemp(prefix="brainxai-bench-"))
    data_dir = data_dir or work / "data"
    if use_random:
        checkpoint = random_checkpoint(work)
    add_user(data_dir, USER, PASSWORD)
    return data_dir, checkpoint, work


def token(server: ServerProcess) -> str:
    r = httpx.post(f"{server.url}/api/auth/token", json={"username": USER, "password": PASSWORD}, timeout=60)
    r.raise_for_status()
    return r.json()["access_token"]
