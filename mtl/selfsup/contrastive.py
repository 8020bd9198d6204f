"""SimCLR: contrastive learning of two augmented views with the NT-Xent loss.

Ting Chen, Simon Kornblith, Mohammad Norouzi, Geoffrey Hinton. "A Simple
Framework for Contrastive Learning of Visual Representations". ICML 2020.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import color_jitter, random_grayscale, random_resized_crop
from .base import Encoder, SelfSupervisedObjective

__all__ = ["ContrastiveLearning", "SimCLRAugmentation", "nt_xent_logits", "nt_xent_loss"]


def nt_xent_logits(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """The NT-Xent loss as a ``2N``-way classification: ``(logits, targets)``.

    Row ``i`` holds ``sim(z_i, z_k) / τ`` for every ``k`` (cosine similarity,
    ``−inf`` at ``k = i``); its target is the index of ``i``'s other view
    (views of sample ``n`` are rows ``n`` and ``N + n``).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two (N, d) projections of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return logits, targets


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Normalised temperature-scaled cross-entropy (Chen et al. 2020, Eq. 1 and Algorithm 1).

    ``ℓ(i, j) = −log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) )`` over the
    ``2N`` projections of ``N`` samples' two views, averaged over all ``2N``
    ordered positive pairs.  ``z1[n]`` and ``z2[n]`` are the two views of sample ``n``.
    """
    logits, targets = nt_xent_logits(z1, z2, temperature)
    return F.cross_entropy(logits, targets)


class SimCLRAugmentation:
    """SimCLR's augmentation on a batch: random resized crop (with flip), colour distortion, grey.

    Defaults (Chen et al. 2020, Appendix A): crop area ``U(0.08, 1)``, aspect
    ratio ``U(3/4, 4/3)``, horizontal flip with probability 0.5; colour jitter
    with strength ``s`` (brightness, contrast and saturation ``0.8 s``, hue
    ``0.2 s``) with probability 0.8, then grey with probability 0.2.  Strength
    0.5 and no Gaussian blur are the authors' CIFAR-10 setting (their
    repository's CIFAR-10 command: ``--color_jitter_strength=0.5 --use_blur=False``),
    the closest to small images; ImageNet uses ``s = 1`` and blur.
    Set ``flip=False`` where a mirror image is a different thing (digits, text).
    """

    def __init__(self, crop_scale: Sequence[float] = (0.08, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip: bool = True, jitter_strength: float = 0.5, jitter_p: float = 0.8, grayscale_p: float = 0.2):
        if jitter_strength < 0 or 0.2 * jitter_strength > 0.5:
            raise ValueError(f"jitter_strength must be in [0, 2.5] (the hue shift 0.2·s is at most 0.5), not {jitter_strength}")
        for name, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability, not {p}")
        self.crop_scale = tuple(float(v) for v in crop_scale)
        self.crop_ratio = tuple(float(v) for v in crop_ratio)
        if len(self.crop_scale) != 2 or len(self.crop_ratio) != 2:
            raise ValueError(f"crop_scale and crop_ratio are (low, high) pairs, not {crop_scale} and {crop_ratio}")
        self.flip = bool(flip)
        self.jitter_strength = float(jitter_strength)
        self.jitter_p = float(jitter_p)
        self.grayscale_p = float(grayscale_p)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = random_resized_crop(images, scale=self.crop_scale, ratio=self.crop_ratio,
                                flip_p=0.5 if self.flip else 0.0, generator=generator)
        s = self.jitter_strength
        if s > 0 and self.jitter_p > 0:
            x = color_jitter(x, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=self.jitter_p, generator=generator)
        if self.grayscale_p > 0:
            x = random_grayscale(x, self.grayscale_p, generator)
        return x


class ContrastiveLearning(SelfSupervisedObjective):
    """SimCLR: two augmented views, NT-Xent loss, τ = 0.5 (Chen et al. 2020).

    Two augmented views of each image, a projection head, the NT-Xent loss
    (Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020).

    Both views of a batch go through the encoder in one forward pass, then
    through the projection head ``g(h) = W₂ ReLU(W₁ h)`` (hidden width = the
    feature width, output ``projection_dim = 128``, as in the paper); the loss
    is :func:`nt_xent_loss`.  The head is thrown away after pretraining: the
    backbone's features ``h`` are what transfers.

    ``temperature = 0.5``: the authors' CIFAR-10 value (their repository's
    CIFAR-10 command, ``--temperature=0.5``, batch 512); their ImageNet runs use
    0.1 with batches of 4096.  The augmentation arguments are those of
    :class:`SimCLRAugmentation`.  The pretext accuracy in :meth:`metrics` is the
    fraction of views whose most similar other view is their positive.
    """

    name = "contrastive"

    def __init__(self, feature_dim: int, temperature: float = 0.5, projection_dim: int = 128,
                 hidden_dim: int | None = None, crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True, jitter_strength: float = 0.5,
                 jitter_p: float = 0.8, grayscale_p: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        if feature_dim < 1 or projection_dim < 1 or (hidden_dim is not None and hidden_dim < 1):
            raise ValueError(f"feature_dim, projection_dim and hidden_dim must be positive, not "
                             f"{feature_dim}, {projection_dim}, {hidden_dim}")
        hidden = feature_dim if hidden_dim is None else hidden_dim
        self.head = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, projection_dim))
        self.temperature = float(temperature)
        self.augment = SimCLRAugmentation(crop_scale, crop_ratio, flip, jitter_strength, jitter_p, grayscale_p)

    def pretext(self, images: Tensor, encoder: Encoder, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if images.shape[0] < 2:
            raise ValueError("contrastive learning needs at least 2 images per batch (the others are the negatives)")
        views = torch.cat([self.augment(images, generator), self.augment(images, generator)])
        z = self.head(encoder(views).flatten(1))
        z1, z2 = z.chunk(2)
        return nt_xent_logits(z1, z2, self.temperature)
