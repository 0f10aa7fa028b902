"""Share of a CPU training epoch spent loading data: decoding JPEGs every epoch vs the decoded cache.

Runs a fixed number of training steps of a model twice on the same images, measuring time spent
waiting for batches ("data") and in forward/backward/step ("compute"):
  1. no cache: every item is read from disk, decoded, cropped and resized in __getitem__ (a
     torchvision ImageFolder-style pipeline);
  2. brainxai: images decoded once by ``decode_samples`` (its one-off cost is reported separately),
     then each epoch reads from the in-memory array (only augmentation + tensor conversion remain).

Usage:
  python experiments/data_loading/data_loading.py [--data ../shared/data/brain-tumor-mri] [--steps 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from brainxai.data.augment import default_augmentation
from brainxai.data.dataset import MRIDataset, decode_samples, discover_samples
from brainxai.data.preprocess import prepare, to_tensor
from brainxai.io.raster import read_raster
from brainxai.models import create_model


class DecodeEveryTime(Dataset):
    """Baseline: decode + crop + resize from disk on every access."""

    def __init__(self, samples, config, augment) -> None:
        self.samples, self.config, self.augment = samples, config, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        img = prepare(read_raster(self.samples[i].path), self.config)
        img = self.augment(img, np.random.default_rng(i))
        return to_tensor(img, self.config), self.samples[i].label


def run(loader: DataLoader, model: torch.nn.Module, steps: int) -> dict[str, float]:
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    model.train()
    data_t = compute_t = 0.0
    mark = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        t = time.perf_counter()
        data_t += t - mark
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        mark = time.perf_counter()
        compute_t += mark - t
    return {"data_s": data_t, "compute_s": compute_t, "data_share": data_t / (data_t + compute_t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/brain-tumor-mri")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, pretrained=False)
    cfg = model.brainxai_config.preprocess
    samples = discover_samples(Path(args.data) / "Training")
    rng = np.random.default_rng(0)
    subset = [samples[i] for i in rng.permutation(len(samples))[: args.steps * args.batch_size]]
    aug = default_augmentation()

    # Warm-up so one-off costs (allocator, thread pools) do not land in either measurement.
    run(DataLoader(DecodeEveryTime(subset[:64], cfg, aug), batch_size=args.batch_size), model, 1)

    baseline = run(DataLoader(DecodeEveryTime(subset, cfg, aug), batch_size=args.batch_size), model, args.steps)
    t = time.perf_counter()
    decoded = decode_samples(subset, cfg, cache_dir=None, progress=False)
    decode_once_s = time.perf_counter() - t
    cached = run(
        DataLoader(MRIDataset(decoded.images, decoded.labels, cfg, augment=aug), batch_size=args.batch_size),
        model,
        args.steps,
    )
    result = {
        "command": "python experiments/data_loading/data_loading.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "model": args.model,
        "images": len(subset),
        "decode_every_epoch": baseline,
        "cached": cached,
        "one_off_decode_s": decode_once_s,
        "data_time_ratio_cached_vs_baseline": cached["data_s"] / baseline["data_s"],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
