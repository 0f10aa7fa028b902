"""Derive the original source (figshare / SARTAJ / Br35H) of every brain-tumor-mri image.

Usage, from the repository root: python experiments/source_derivation/derive.py   (DATA overrides ../shared/data)
Writes experiments/source_derivation/sources.csv and prints every number used in report.md. Runtime ~1 min on 2 cores.
"""

import collections
import csv
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.environ.get("DATA", os.path.join(ROOT, "..", "shared", "data"))
CACHE = os.path.join(ROOT, ".cache", "brainxai", "source_hashes.npz")
if not os.path.exists(CACHE):
    subprocess.check_call([sys.executable, os.path.join(HERE, "hashes.py")])
z = np.load(CACHE, allow_pickle=True)
P = z["path"]


def bits(a):
    return np.unpackbits(a, axis=1).astype(np.uint8)


H, HF = bits(z["hash"]), bits(z["hflip"])


def ham(A, B):  # min Hamming distance and argmin of rows of A to rows of B
    d = (A[:, None, :] != B[None, :, :]).sum(2)
    return d.min(1), d.argmin(1)


kag = np.array([p.startswith("brain-tumor-mri/") for p in P])
figm = np.array([p.startswith("figshare-masks-dev/") for p in P])
figb = np.array([p.startswith("figshare-boxes-dev/") for p in P])
K = np.nonzero(kag)[0]
PK = P[K]
split = np.array([p.split("/")[1] for p in PK])
cls = np.array([p.split("/")[2] for p in PK])
name = np.array([p.split("/")[3] for p in PK])
num = np.array([int(re.search(r"_(\d+)\.jpg", n).group(1)) for n in name])
mode = z["mode"][K]
chroma = z["chroma"][K].astype(float)
CL = ["glioma", "meningioma", "pituitary", "notumor"]
SP = ["Training", "Testing"]
T = 2  # pHash threshold (bits); see histogram

# --- 1. figshare twins (figshare-masks-dev; boxes-dev is a subset, checked) ---
fidx = np.nonzero(figm)[0]
d_plain, a_plain = ham(H[K], H[fidx])
d_flip, a_flip = ham(HF[K], H[fidx])
db, _ = ham(H[np.nonzero(figb)[0]], H[fidx])
print(f"figshare-boxes-dev: {figb.sum()} images, {int((db == 0).sum())} with an exact pHash twin in figshare-masks-dev")
print("\n## Nearest pHash distance to figshare-masks-dev (plain | Kaggle image h-flipped), by mode and class")
for c in CL:
    for m in ["L", "RGB"]:
        s = (cls == c) & (mode == m)
        if s.sum():
            print(
                f"{c:10s} {m:3s} n={s.sum():4d} plain {np.bincount(np.minimum(d_plain[s], 24), minlength=25)[:25:2].tolist()}"
            )
            print(f"{'':14s}       flip  {np.bincount(np.minimum(d_flip[s], 24), minlength=25)[:25:2].tolist()}")
print("(bins 0,2,4,...,24+; pHash distances here are always even)")
fig_plain = d_plain <= T
fig_flip = d_flip <= T
print("\n## figshare-dev twins per split/class (threshold <=", T, "bits)")
print("split      class      n    L   RGB  plain-twin(RGB) flip-twin(L) L-flip-rate")
for sp in SP:
    for c in CL:
        s = (split == sp) & (cls == c)
        L = s & (mode == "L")
        print(
            f"{sp:9s} {c:10s} {s.sum():4d} {L.sum():4d} {(s & (mode == 'RGB')).sum():4d} "
            f"{(s & fig_plain).sum():6d} ({(s & fig_plain & (mode == 'RGB')).sum()}) {(s & fig_flip).sum():6d} ({(L & fig_flip).sum()})"
            f"  {(L & fig_flip).sum() / max(L.sum(), 1):.2f}"
        )
print("cross-tab mode x twin-type:")
for m in ["L", "RGB"]:
    s = mode == m
    print(
        f"  {m}: plain-twin {(s & fig_plain).sum()}, flip-twin {(s & fig_flip).sum()}, both {(s & fig_plain & fig_flip).sum()}, n {s.sum()}"
    )
# how many distinct figshare slices each kind covers
fl = a_flip[fig_flip & (mode == "L")]
pl = a_plain[fig_plain & (mode == "RGB")]
fcls = np.array([os.path.basename(p).split("_")[0] for p in P[fidx]])
print(
    "figshare-dev slices covered: by L (flipped)",
    len(set(fl)),
    " by RGB (plain)",
    len(set(pl)),
    " by both",
    len(set(fl) & set(pl)),
    " of",
    len(fidx),
)
for c in ["glioma", "meningioma", "pituitary"]:
    n = (fcls == c).sum()
    print(
        f"  {c}: dev {n}, in Kaggle-L {len({i for i in fl if fcls[i] == c})}, in Kaggle-RGB {len({i for i in pl if fcls[i] == c})}"
    )

# --- 2. mirror twins inside Kaggle: RGB tumour image == h-flipped L image ---
Lk = np.nonzero(mode == "L")[0]
Rk = np.nonzero(mode == "RGB")[0]
dm, am = ham(H[K][Rk], HF[K][Lk])
mirror = np.full(len(K), 99)
mirror[Rk] = dm
mirror_of = np.full(len(K), -1)
mirror_of[Rk] = Lk[am]
print("\n## RGB image vs h-flipped L image inside Kaggle (nearest distance), by class")
for c in CL:
    s = cls[Rk] == c
    print(f"{c:10s} n={s.sum():4d} {np.bincount(np.minimum(dm[s], 24), minlength=25)[:25:2].tolist()}")
mt = mirror <= T
for sp in SP:
    for c in CL:
        s = (split == sp) & (cls == c) & (mode == "RGB")
        cross = s & mt & (split[np.maximum(mirror_of, 0)] != sp)
        print(
            f"  {sp:9s} {c:10s} RGB {s.sum():4d}: mirror twin of a Kaggle L image {(s & mt).sum():4d} "
            f"(twin in other split {cross.sum()}); with figshare-dev plain twin {(s & fig_plain).sum()}; "
            f"either {(s & (mt | fig_plain)).sum()}"
        )
# consistency: RGB plain twin of dev slice X, and its mirror L twin flip-matches the same X?
both = np.nonzero(fig_plain & mt)[0]
agree = sum(a_plain[i] == a_flip[mirror_of[i]] and fig_flip[mirror_of[i]] for i in both)
print(f"  RGB images with both a dev twin and a mirror L twin: {len(both)}; same figshare slice: {agree}")
# L-block vs file numbering
print("\n## file numbering: L (figshare) block vs RGB block")
for sp in SP:
    for c in ["glioma", "meningioma", "pituitary"]:
        s = (split == sp) & (cls == c)
        print(
            f"  {sp} {c}: RGB numbers {num[s & (mode == 'RGB')].min()}-{num[s & (mode == 'RGB')].max()}, "
            f"L numbers {num[s & (mode == 'L')].min()}-{num[s & (mode == 'L')].max()}"
        )

# --- 3. BRISC ---
rows = list(csv.DictReader(open(f"{DATA}/brisc-masks-dev/slices.csv")))
pos = {p[len("brain-tumor-mri/") :]: i for i, p in enumerate(PK)}
brisc_plane = np.array([""] * len(K), dtype=object)
print("\n## BRISC kaggle_twin by Kaggle mode/class")
cnt = collections.Counter()
for r in rows:
    if r["kaggle_twin"]:
        i = pos[r["kaggle_twin"]]
        brisc_plane[i] = r["plane"]
        cnt[
            (
                cls[i],
                mode[i],
                "figdev-plain" if fig_plain[i] else ("figdev-flip" if fig_flip[i] else ("mirror" if mt[i] else "none")),
            )
        ] += 1
for k, v in sorted(cnt.items()):
    print("  ", k, v)
bidx = np.nonzero([p.startswith("brisc-masks-dev/") for p in P])[0]
db2, _ = ham(H[bidx], H[fidx])
db3, _ = ham(H[bidx], HF[fidx])
print(
    f"  BRISC images with a plain figshare-dev twin {(db2 <= T).sum()}, flipped twin {(db3 <= T).sum()} of {len(bidx)}"
)
print("  BRISC file-name tokens: brisc2025_<split>_<n>_<gl|me|pi|no>_<ax|co|sa>_t1 -> no source token")

# --- 4. no-tumour: SARTAJ block vs Br35H ---
print("\n## notumor: chroma (mean |R-G-B spread|) and file number")
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

SART_N = {"Training": 395, "Testing": 105}  # SARTAJ no_tumor Training/Testing sizes
feat_names = ["bw", "bh", "fg", "mean", "std", "zero", "p99", "p50fg", "noise", "noise_bg", "rowpad", "colpad"]
X = np.stack([z[k][K].astype(float) for k in feat_names], 1)
X = np.nan_to_num(X)
for sp in SP:
    s = np.nonzero((split == sp) & (cls == "notumor"))[0]
    o = s[np.argsort(num[s])]
    first_c = num[o][np.argmax((chroma[o] > 0) | (mode[o] == "L"))]
    nz = (chroma[o] > 0) | (mode[o] == "L")
    print(
        f"  {sp}: n={len(o)}, first number with chroma>0 or mode L: {first_c}; "
        f"chroma>0|L among numbers < {SART_N[sp]}: {nz[num[o] < SART_N[sp]].sum()}, among >= : {nz[num[o] >= SART_N[sp]].sum()} of {(num[o] >= SART_N[sp]).sum()}; "
        f"missing numbers: {sorted(set(range(num[o].max() + 1)) - set(num[o]))}"
    )
# property classifier: block A (number < N) vs block B, cross-validated, per split trained on both
s = np.nonzero(cls == "notumor")[0]
yA = np.array([num[i] < SART_N[split[i]] for i in s])
Xs = (X[s] - X[s].mean(0)) / (X[s].std(0) + 1e-9)
pr = cross_val_predict(LogisticRegression(max_iter=2000, C=1.0), Xs, yA, cv=5, method="predict_proba")[:, 1]
print(
    f"  property-only logistic regression, block A vs B (5-fold CV): AUC {roc_auc_score(yA, pr):.3f}, "
    f"acc@0.5 {((pr > 0.5) == yA).mean():.3f}"
)
for k, f in enumerate(feat_names):
    a, b = X[s][yA, k], X[s][~yA, k]
    print(
        f"    {f:9s} A median {np.median(a):7.3f}  B median {np.median(b):7.3f}  AUC {roc_auc_score(yA, X[s][:, k]):.3f}"
    )
# change-point sharpness: mean CV prob in windows of file number
for sp in SP:
    ss = np.array([split[i] == sp for i in s])
    n0 = SART_N[sp]
    nn = num[s][ss]
    pp = pr[ss]
    w = [(n0 - 60, n0 - 30), (n0 - 30, n0), (n0, n0 + 30), (n0 + 30, n0 + 60)]
    print(
        f"  {sp}: mean P(SARTAJ-like) in number windows",
        {f"{a}-{b - 1}": round(float(pp[(nn >= a) & (nn < b)].mean()), 2) for a, b in w},
    )
# near-duplicates inside notumor between blocks
sa = s[yA]
sb = s[~yA]
dd, _ = ham(H[K][sb], H[K][sa])
print(f"  Br35H-block images with a pHash twin (<= {T}) in the SARTAJ block: {(dd <= T).sum()} of {len(sb)}")
# same properties for tumour classes: SARTAJ (RGB) vs figshare (L)
print('\n## properties, tumour classes: RGB (SARTAJ) vs L (figshare), AUC for "is L"')
st = np.nonzero(cls != "notumor")[0]
yL = mode[st] == "L"
for k, f in enumerate(feat_names):
    print(
        f"    {f:9s} RGB median {np.median(X[st][~yL, k]):7.3f}  L median {np.median(X[st][yL, k]):7.3f}  AUC {roc_auc_score(yL, X[st][:, k]):.3f}"
    )
Xt = (X[st] - X[st].mean(0)) / (X[st].std(0) + 1e-9)
pt = cross_val_predict(LogisticRegression(max_iter=2000), Xt, yL, cv=5, method="predict_proba")[:, 1]
print(
    f"  property-only logistic regression L vs RGB (5-fold CV): AUC {roc_auc_score(yL, pt):.3f}, acc {((pt > 0.5) == yL).mean():.3f}"
)

# --- 5. the rule ---
src = np.empty(len(K), dtype=object)
conf = np.empty(len(K), dtype=object)
ev = np.empty(len(K), dtype=object)
for i in range(len(K)):
    if cls[i] != "notumor":
        if mode[i] == "L":
            src[i] = "figshare"
            conf[i] = "high"
            ev[i] = "mode L" + (" + h-flipped twin of figshare-dev" if fig_flip[i] else "")
        else:
            src[i] = "SARTAJ"
            conf[i] = "high"
            ev[i] = (
                "mode RGB"
                + (" + plain twin of figshare-dev (SARTAJ copy of a figshare slice)" if fig_plain[i] else "")
                + (" + mirror twin of Kaggle L image" if mt[i] else "")
            )
    else:
        if num[i] < SART_N[split[i]]:
            src[i] = "SARTAJ"
            conf[i] = "medium"
            ev[i] = f"notumor file number < {SART_N[split[i]]}"
        else:
            src[i] = "Br35H"
            conf[i] = "medium"
            ev[i] = f"notumor file number >= {SART_N[split[i]]}"
        if chroma[i] > 0 or mode[i] == "L":
            ev[i] += "; chroma>0 or mode L (never seen in SARTAJ block)"
            if src[i] == "Br35H":
                conf[i] = "high"
# underlying figshare slice (for grouping / leak control)
fig_slice = np.array([""] * len(K), dtype=object)
for i in range(len(K)):
    if fig_plain[i]:
        fig_slice[i] = os.path.basename(P[fidx[a_plain[i]]])
    elif fig_flip[i]:
        fig_slice[i] = os.path.basename(P[fidx[a_flip[i]]])
contains_fig = (cls != "notumor") & ((mode == "L") | fig_plain | mt)
with open(os.path.join(HERE, "sources.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(
        [
            "file",
            "split",
            "label",
            "mode",
            "source",
            "confidence",
            "figshare_content",
            "figshare_dev_slice",
            "d_plain",
            "d_flip",
            "mirror_twin",
            "brisc_plane",
            "evidence",
        ]
    )
    for i in range(len(K)):
        w.writerow(
            [
                PK[i][len("brain-tumor-mri/") :],
                split[i],
                cls[i],
                mode[i],
                src[i],
                conf[i],
                int(contains_fig[i]),
                fig_slice[i],
                d_plain[i],
                d_flip[i],
                PK[mirror_of[i]][len("brain-tumor-mri/") :] if mt[i] else "",
                brisc_plane[i],
                ev[i],
            ]
        )
print("\n## resulting labels (split, class, source, count)")
for sp in SP:
    for c in CL:
        s = (split == sp) & (cls == c)
        print(f"  {sp:9s} {c:10s}", dict(collections.Counter(src[s])), " figshare content:", int(contains_fig[s].sum()))
print(
    "  planes (BRISC) by source, tumour classes:",
    dict(collections.Counter((src[i], brisc_plane[i]) for i in range(len(K)) if brisc_plane[i])),
)
print("wrote", os.path.join(HERE, "sources.csv"))
