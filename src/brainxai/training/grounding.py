"""Lesion-grounded training: losses that tie the classifier's decision to the tumour mask.

Kinds (``brainxai train --grounding``):

``none``
    Plain cross-entropy.
``rrr``
    "Right for the right reasons" (Ross et al., 2017): the share of input-gradient mass of the true
    class's log-probability that lies OUTSIDE the dilated lesion mask, on images with a mask, added
    with weight ``w`` (double back-propagation). The saliency is the squared gradient summed over the
    colour channels first (they all carry the same grey value): ``s = (sum_c dlogp_y/dx_c)^2``, and the
    penalty ``sum(s * (1 - M)) / sum(s)``: exactly 0 when all gradient mass lies inside the mask, up
    to 1 when all of it lies outside, and independent of the gradient's scale.
``cam``
    The same penalty on the Grad-CAM map of the true class instead of the input gradient: the share
    of positive Grad-CAM mass (on the CAM target layer's grid) in cells that do not touch the dilated
    mask. The map needs the gradient of the logit with respect to the feature map only (through the
    head, not the encoder), so the second-order cost is small. Measured on the shared 2-core CPU
    (efficientnet-lite0, 128 px, batch 32, fastest of 6-9 steps): plain 574 ms, ``rrr`` 3,089 ms (5.4x),
    ``cam`` 571 ms, ``multitask`` 562 ms per step.
``multitask``
    A small mask head (two 1x1 convolutions) on the feature map of the model's CAM target layer (the
    shared encoder's last map) predicts the lesion: binary cross-entropy on images with a mask and on
    no-tumour images (whose mask is empty by definition), plus soft Dice on images with a mask, added
    with weight ``w``. The head is discarded at inference: the classifier's weights and outputs are
    unchanged, its checkpoint loads with ``Classifier.load``; the head is kept beside it
    (``mask_head.safetensors``) for inspection only.
``inpaint``
    Mask-aware augmentation: with probability ``inpaint_p`` a tumour image with a mask has its dilated
    lesion in-painted from the surrounding tissue (:func:`brainxai.data.lesion.inpaint_lesion`) and is
    trained towards "no tumour" with a soft target (0.9 no tumour, 0.1 the original class), weight
    ``w``. Why a relabel: with the lesion gone the slice carries no visible evidence of a tumour, and
    what is left (the source's contrast, framing and compression) must stop predicting the tumour
    class. Why soft: the fill is a smooth patch, not anatomy, and oedema or mass effect beyond the
    dilated mask may remain. With ``inpaint_control_p`` > 0 as many images again (by that share) have
    the mirrored control area in-painted and keep their label, so that the fill itself is no cue.
    ``inpaint_fill`` chooses the fill: ``telea`` (the xai-benchmark's) or ``transplant`` (the slice's
    own tissue from a reflection, :func:`brainxai.data.lesion.transplant_fill`); ``inpaint_classes``
    limits the in-painting to those classes' images.
``multitask-inpaint``
    Both: the mask head learns the lesion while in-painted slices train towards "no tumour"; on an
    in-painted slice the head's target is empty (the lesion is gone), on a control slice the lesion.
    Why together: counterfactuals alone take away what the glioma decision rested on (the sources'
    look) without teaching a lesion to rest on instead (``experiments/inpaint_control/``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from brainxai.constants import CLASSES
from brainxai.data.augment import Compose
from brainxai.data.masks import MaskedMRIDataset, load_lesion_masks, prepared_masks
from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.registry import get_submodule, model_config
from brainxai.training.split import TrainingSplit

logger = logging.getLogger(__name__)

GROUNDING_KINDS = ("none", "rrr", "cam", "multitask", "inpaint", "multitask-inpaint")
#: Kinds whose dataset in-paints lesions, and kinds that train the mask head.
INPAINT_KINDS = ("inpaint", "multitask-inpaint")
HEAD_KINDS = ("multitask", "multitask-inpaint")
#: Soft target of an in-painted image: this much "no tumour", the rest the original class.
INPAINT_NOTUMOR_SHARE = 0.9
NOTUMOR = CLASSES.index("notumor")


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grows ``(N, 1, H, W)`` 0/1 masks by ``pixels`` (a square, Chebyshev distance)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def saliency(grad: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` input gradients -> ``(N, H, W)`` squared channel-summed gradients, scaled to max 1 per image.

    The scaling (by a detached per-image maximum) changes no share and keeps the squares in range.
    """
    g = grad.sum(dim=1)
    scale = g.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-30)
    return (g / scale[:, None, None]) ** 2


def outside_share(sal: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per image, the share of saliency mass outside ``region`` (``(N, H, W)`` each); 0 where there is no mass."""
    total = sal.flatten(1).sum(dim=1)
    outside = (sal * (1.0 - region)).flatten(1).sum(dim=1)
    return torch.where(total > 0, outside / total.clamp_min(1e-12), torch.zeros_like(total))


def input_gradient_outside(
    x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, region: torch.Tensor, create_graph: bool = True
) -> torch.Tensor:
    """Per image, the share of the true-class input-gradient mass outside ``region`` (``(N, H, W)``).

    ``logits`` (``(N, K)``) must have been computed from ``x`` (``(N, C, H, W)``, ``requires_grad``).
    With ``create_graph`` the result is differentiable in the model's weights (double back-propagation).
    """
    logp = torch.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(logp, x, create_graph=create_graph)
    return outside_share(saliency(grad), region)


def rrr_penalty(
    x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, region: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """The ``rrr`` term: mean over ``rows`` (bool ``(N,)``) of :func:`input_gradient_outside`, differentiable.

    Only the selected rows' log-probabilities are differentiated. In training mode BatchNorm couples
    the images of a batch, so the other rows' inputs get a (small) gradient too; they are not counted.
    """
    logp = torch.log_softmax(logits.float(), dim=1).gather(1, y[:, None])[rows].sum()
    (grad,) = torch.autograd.grad(logp, x, create_graph=True)
    return outside_share(saliency(grad[rows]), region[rows]).mean()


class MaskHead(nn.Module):
    """Two 1x1 convolutions: a feature map ``(N, C, h, w)`` -> mask logits ``(N, 1, h, w)``."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(features)
        return out


def cam_outside(
    features: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, region: torch.Tensor, create_graph: bool = True
) -> torch.Tensor:
    """Per image, the share of positive Grad-CAM mass of class ``y`` in cells outside ``region``.

    Args:
        features: ``(N, K, h, w)`` feature map the ``logits`` were computed from.
        logits: ``(N, classes)``.
        y: ``(N,)`` classes to explain.
        region: ``(N, H, W)`` 0/1 input-resolution region; a cell counts as inside when it touches it.
        create_graph: Keep the result differentiable in the weights.
    """
    score = logits.float().gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(score, features, create_graph=create_graph)
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features.float()).sum(dim=1))
    cells = F.adaptive_max_pool2d(region[:, None], (int(cam.shape[-2]), int(cam.shape[-1])))[:, 0]
    return outside_share(cam, cells)


def mask_loss(pred: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """BCE on rows with a mask or known to be empty, plus soft Dice on rows with a mask (targets pooled to ``pred``)."""
    target = F.adaptive_avg_pool2d(mask, (int(pred.shape[-2]), int(pred.shape[-1])))
    rows = has_mask | empty
    if not rows.any():
        return pred.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(pred[rows].float(), target[rows])
    if not has_mask.any():
        return bce
    p = torch.sigmoid(pred[has_mask].float()).flatten(1)
    t = target[has_mask].flatten(1)
    dice = 1.0 - (2 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return bce + dice.mean()


@dataclass
class Grounding:
    """One grounding kind, ready for a training batch.

    Attributes:
        kind: One of :data:`GROUNDING_KINDS`.
        weight: Weight of the grounding term.
        dilate_px: Dilation of the mask (input pixels) for ``rrr`` (the margin counted as inside).
        head: The mask head of ``multitask``.
    """

    kind: str
    weight: float = 1.0
    dilate_px: int = 5
    head: MaskHead | None = None
    _features: list[torch.Tensor] = field(default_factory=list)
    _hook: Any = None

    def __post_init__(self) -> None:
        if self.kind not in GROUNDING_KINDS:
            raise ValueError(f"unknown grounding {self.kind!r}; use one of {', '.join(GROUNDING_KINDS)}")

    def attach(self, model: nn.Module, img_size: int, device: torch.device) -> None:
        """For ``cam`` and the mask-head kinds: hooks the model's CAM target layer (and builds the head)."""
        if self.kind not in ("cam", *HEAD_KINDS):
            return
        layer = get_submodule(model, model_config(model).target_layer)
        # One slot, overwritten: validation passes also run the hook and must not pile feature maps up.
        self._hook = layer.register_forward_hook(lambda _m, _i, out: self._features.__setitem__(slice(None), [out]))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model_config(model).preprocess.channels, img_size, img_size, device=device))
        model.train(was_training)
        channels = self._features[-1].shape[1]
        self._features.clear()
        if self.kind in HEAD_KINDS:
            self.head = MaskHead(channels).to(device)

    def parameters(self) -> list[nn.Parameter]:
        """Extra parameters to train (the mask head's)."""
        return list(self.head.parameters()) if self.head is not None else []

    def batch_loss(
        self, model: nn.Module, batch: list[torch.Tensor], loss_fn: nn.Module, amp: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Loss of a training batch ``(x, y, mask, has_mask, inpainted)``.

        Returns:
            The total loss, the logits, the hard targets the accuracy is counted against, and the
            grounding term's value (0.0 for ``none``).
        """
        x, y, mask, has_mask, inpainted = batch
        has_mask, inpainted = has_mask.bool(), inpainted.bool()
        if self.kind == "rrr" and has_mask.any():
            x = x.detach().requires_grad_(True)
        self._features.clear()
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        target = torch.where(inpainted, torch.full_like(y, NOTUMOR), y)
        if self.kind in INPAINT_KINDS and inpainted.any():
            soft = F.one_hot(y, logits.shape[1]).float() * (1 - INPAINT_NOTUMOR_SHARE)
            soft[:, NOTUMOR] += INPAINT_NOTUMOR_SHARE
            per = F.cross_entropy(logits.float(), soft, reduction="none")
            extra = per[inpainted].mean()
            base = loss_fn(logits[~inpainted].float(), y[~inpainted]) if (~inpainted).any() else extra * 0.0
            loss, term_value = base + self.weight * extra, float(extra.detach())
        else:
            loss, term_value = loss_fn(logits.float(), y), 0.0
        if self.kind in HEAD_KINDS and self.head is not None and self._features:
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
                pred = self.head(self._features[-1])
            kept = has_mask & ~inpainted  # an in-painted slice's lesion is gone: its target is empty
            term = mask_loss(pred, mask * kept[:, None, None, None], kept, (y == NOTUMOR) | inpainted)
            self._features.clear()
            return loss + self.weight * term, logits, target, term_value + float(term.detach())
        if self.kind == "rrr" and has_mask.any():
            region = dilate(mask, self.dilate_px)[:, 0]
            term = rrr_penalty(x, logits, y, region, has_mask)
            return loss + self.weight * term, logits, target, float(term.detach())
        if self.kind == "cam" and has_mask.any() and self._features:
            region = dilate(mask, self.dilate_px)[:, 0]
            # Every row's map (the gradient is taken for the whole feature map), masked rows counted.
            share = cam_outside(self._features[-1], logits, y, region)[has_mask]
            self._features.clear()
            term = share.mean()
            return loss + self.weight * term, logits, target, float(term.detach())
        self._features.clear()
        return loss, logits, target, term_value

    def summary(self) -> dict[str, Any]:
        """What the checkpoint records about the grounding."""
        info: dict[str, Any] = {"kind": self.kind, "weight": self.weight}
        if self.kind == "cam":
            info["dilate_px"] = self.dilate_px
            info["penalty"] = "share of positive Grad-CAM mass (target layer grid) outside the dilated mask"
        if self.kind == "rrr":
            info["dilate_px"] = self.dilate_px
            info["penalty"] = "share of squared channel-summed input-gradient mass outside the dilated mask"
        if self.kind in HEAD_KINDS:
            info["head"] = (
                "2x1x1 conv on the CAM target layer; BCE (masked + no-tumour) + soft Dice; discarded at inference"
            )
        if self.kind in INPAINT_KINDS:
            info["target"] = f"soft: {INPAINT_NOTUMOR_SHARE} notumor, {1 - INPAINT_NOTUMOR_SHARE:.1f} original class"
        return info


def grounded_dataset(
    split: TrainingSplit,
    preprocess: PreprocessConfig,
    augment: Compose | None,
    config: Any,
) -> tuple[MaskedMRIDataset, dict[str, Any]]:
    """The training half of ``split`` as a :class:`MaskedMRIDataset`, and what the checkpoint records about its masks.

    Args:
        split: The run's split (with ``samples`` aligned to its images).
        preprocess: The model's preprocessing (the masks follow its head crop and size).
        augment: The training augmentation (must have ``apply_pair``), or None.
        config: The run's :class:`~brainxai.training.trainer.TrainConfig` (``grounding``, ``masks_*``,
            ``inpaint_p``, ``inpaint_control_p``, ``inpaint_fill``, ``inpaint_classes``, ``grounding_dilate_px``,
            ``cache_dir``, ``seed``).
    """
    t0 = time.perf_counter()
    found = load_lesion_masks(split.folder, config.masks_brisc, config.masks_figshare, cache_dir=config.cache_dir)
    train_samples = [split.samples[i] for i in split.train_idx]
    masks, has = prepared_masks(train_samples, split.folder, found.masks, preprocess)
    labels = split.labels[split.train_idx]
    dataset = MaskedMRIDataset(
        split.images[split.train_idx],
        labels,
        preprocess,
        masks,
        has,
        augment=augment,
        seed=config.seed,
        inpaint_p=config.inpaint_p if config.grounding in INPAINT_KINDS else 0.0,
        inpaint_dilate_px=config.grounding_dilate_px,
        control_p=config.inpaint_control_p if config.grounding in INPAINT_KINDS else 0.0,
        fill=config.inpaint_fill,
        inpaint_labels=[CLASSES.index(c) for c in config.inpaint_classes] or None,
    )
    per_class = {c: int(has[labels == i].sum()) for i, c in enumerate(CLASSES)}
    info = {
        "sources": {"brisc": config.masks_brisc, "figshare": config.masks_figshare},
        "found": found.summary(),
        "n_train_with_mask": int(has.sum()),
        "train_with_mask_per_class": per_class,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    logger.info("lesion masks for %d of %d training images: %s", int(has.sum()), len(has), per_class)
    return dataset, info
