"""Stage 1: compute and cache 64-bit pHash + image features for all relevant images."""

import glob
import os
from multiprocessing import Pool

import imagehash
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("DATA", os.path.join(ROOT, "..", "shared", "data"))
CACHE = os.path.join(ROOT, ".cache", "brainxai", "source_hashes.npz")


def feats(path):
    im = Image.open(path)
    mode = im.mode
    info = im.info
    g = im.convert("L")
    h = imagehash.phash(g)
    a = np.asarray(g, dtype=np.float32)
    out = dict(mode=mode, comment=int("comment" in info), hash=np.packbits(h.hash.flatten()))
    out["hflip"] = np.packbits(imagehash.phash(g.transpose(Image.FLIP_LEFT_RIGHT)).hash.flatten())
    if "brain-tumor-mri" in path:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        out["chroma"] = float(np.abs(rgb - rgb.mean(2, keepdims=True)).max(2).mean())
        m = a > 15
        ys, xs = np.nonzero(m)
        if len(xs):
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        else:
            x0 = y0 = 0
            x1 = y1 = a.shape[0]
        out["bw"] = (x1 - x0) / a.shape[1]
        out["bh"] = (y1 - y0) / a.shape[0]
        out["fg"] = float(m.mean())
        out["mean"] = float(a.mean())
        out["std"] = float(a.std())
        out["zero"] = float((a <= 2).mean())
        out["p99"] = float(np.percentile(a, 99))
        out["p50fg"] = float(np.median(a[m])) if m.any() else 0.0
        # noise: std of Laplacian in the background corner-ish (dark) region and overall
        lap = a[1:-1, 1:-1] * 4 - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
        bg = ~m[1:-1, 1:-1]
        out["noise_bg"] = float(lap[bg].std()) if bg.sum() > 50 else -1.0
        out["noise"] = float(np.median(np.abs(lap)))
        # top-row / left-col content (padding detection)
        out["rowpad"] = float(((a > 15).mean(1) < 0.01).mean())
        out["colpad"] = float(((a > 15).mean(0) < 0.01).mean())
    return path, out


def main():
    paths = (
        sorted(glob.glob(f"{DATA}/brain-tumor-mri/*/*/*.jpg"))
        + sorted(glob.glob(f"{DATA}/figshare-masks-dev/images/*.jpg"))
        + sorted(glob.glob(f"{DATA}/figshare-boxes-dev/images/*.jpg"))
        + sorted(glob.glob(f"{DATA}/brisc-masks-dev/images/*/*.jpg"))
    )
    with Pool(2) as p:
        res = p.map(feats, paths, chunksize=64)
    keys = sorted({k for _, o in res for k in o if k not in ("hash", "hflip")})
    arrs = {
        "path": np.array([os.path.relpath(p, DATA) for p, _ in res]),
        "hash": np.stack([o["hash"] for _, o in res]),
        "hflip": np.stack([o["hflip"] for _, o in res]),
    }
    for k in keys:
        vals = [o.get(k, np.nan) for _, o in res]
        arrs[k] = np.array(vals)
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    np.savez(CACHE, **arrs)
    print("cached", len(paths))


if __name__ == "__main__":
    main()
