"""Image augmentations on whole batches, on the batch's device.

Every function takes a float batch ``(N, C, H, W)`` with values in ``[0, 1]``
(before normalisation) and draws an independent random transformation per
image from one call to the random number generator, so a batch costs a
handful of tensor operations instead of ``N`` per-sample PIL calls.
``generator`` (a ``torch.Generator`` on the batch's device) makes a draw
reproducible, e.g. for validation; by default the global generator is used.

The colour operations follow the definitions of torchvision's
``transforms.functional`` (``adjust_brightness``, ``adjust_contrast``,
``adjust_saturation``, ``adjust_hue``, ``rgb_to_grayscale``), which the tests
check image by image.  Grey (1-channel) images have no saturation or hue: those
operations leave them unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "grayscale",
    "hsv_to_rgb",
    "random_grayscale",
    "random_crop_boxes",
    "random_horizontal_flip",
    "random_resized_crop",
    "resized_crop",
    "rgb_to_hsv",
    "rotate_batch",
]

#: ITU-R 601-2 luma weights as torchvision's tensor rgb_to_grayscale writes them (0.2989, not 0.299)
_LUMA = (0.2989, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, dtype=like.dtype, generator=generator)


def _bernoulli(n: int, p: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=like.device, generator=generator) < p


def _check(images: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected float images in [0, 1], got {images.dtype}; convert (x / 255) first")


# --------------------------------------------------------------------------- geometry
def resized_crop(images: Tensor, boxes: Tensor, size: int | tuple[int, int] | None = None,
                 flip: Tensor | None = None) -> Tensor:
    """Crop each image to its box and resize it to ``size``, in one ``grid_sample`` call.

    ``boxes`` is ``(N, 4)``: ``(top, left, height, width)`` in pixels (floats
    allowed).  Bilinear sampling with ``align_corners=False``: a box covering the
    whole image at the same size returns the image unchanged.  Output pixels
    that sample within half a pixel of a box edge interpolate with the image's
    pixels just outside the box (cropping first, then resizing, would repeat
    the edge pixels instead).  ``flip`` (a bool
    ``(N,)``) mirrors the chosen images left-right as part of the same sampling.
    """
    _check(images)
    n, _, height, width = images.shape
    out_h, out_w = (height, width) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    boxes = boxes.to(device=images.device, dtype=images.dtype)
    top, left, box_h, box_w = boxes.unbind(1)
    # the affine map from output coordinates in [-1, 1] to input coordinates in [-1, 1]
    scale_x, scale_y = box_w / width, box_h / height
    centre_x = (2 * left + box_w) / width - 1
    centre_y = (2 * top + box_h) / height - 1
    if flip is not None:
        scale_x = torch.where(flip.to(images.device), -scale_x, scale_x)
    zeros = torch.zeros_like(scale_x)
    theta = torch.stack([torch.stack([scale_x, zeros, centre_x], 1), torch.stack([zeros, scale_y, centre_y], 1)], 1)
    grid = F.affine_grid(theta, [n, images.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_crop_boxes(n: int, height: int, width: int, scale: Sequence[float] = (0.08, 1.0),
                      ratio: Sequence[float] = (3 / 4, 4 / 3), generator: torch.Generator | None = None,
                      attempts: int = 10, device: torch.device | str | None = None) -> Tensor:
    """``n`` boxes ``(top, left, height, width)`` drawn as torchvision's ``RandomResizedCrop`` draws one.

    Area fraction ``s ~ U(scale)``, log aspect ratio ``~ U(log ratio)``, up to
    ``attempts`` tries until the box fits in the image, else the whole image
    (torchvision then takes a central crop, which is the whole image when the
    image's aspect ratio lies in ``ratio``, as for square images).  All boxes
    try at once: ``attempts`` candidates each, the first that fits is kept.
    """
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, not {tuple(scale)}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, not {tuple(ratio)}")
    u = torch.rand((4, attempts, n), device=device, generator=generator)
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * u[1])
    box_w = torch.sqrt(target_area * aspect).round()
    box_h = torch.sqrt(target_area / aspect).round()
    fits = (box_w >= 1) & (box_h >= 1) & (box_w <= width) & (box_h <= height)
    top = ((height - box_h + 1) * u[2]).floor().clamp(min=0)
    left = ((width - box_w + 1) * u[3]).floor().clamp(min=0)
    candidates = torch.stack([top, left, box_h, box_w], -1)  # (attempts, n, 4)
    whole = torch.tensor([0.0, 0.0, height, width], device=candidates.device).expand(1, n, 4)
    first = torch.where(fits.any(0), fits.float().argmax(0), attempts)  # index of the first fitting box
    padded = torch.cat([candidates, whole])  # index `attempts`: the whole image
    return padded.gather(0, first.view(1, n, 1).expand(1, n, 4)).squeeze(0)


def random_resized_crop(images: Tensor, size: int | tuple[int, int] | None = None,
                        scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                        flip_p: float = 0.0, generator: torch.Generator | None = None, attempts: int = 10) -> Tensor:
    """Random crop of a random area and aspect ratio (:func:`random_crop_boxes`), resized
    back to ``size`` (default: the input size) with :func:`resized_crop`.

    ``flip_p`` mirrors each crop left-right with that probability in the same
    sampling step (SimCLR's "random crop and resize (with random flip)").
    """
    _check(images)
    n, _, height, width = images.shape
    boxes = random_crop_boxes(n, height, width, scale, ratio, generator, attempts, device=images.device)
    flip = _bernoulli(n, flip_p, images, generator) if flip_p > 0 else None
    return resized_crop(images, boxes, size, flip)


def random_horizontal_flip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check(images)
    chosen = _bernoulli(images.shape[0], p, images, generator).view(-1, 1, 1, 1)
    return torch.where(chosen, images.flip(-1), images)


def rotate_batch(images: Tensor, all_rotations: bool = True,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Rotations by 0°, 90°, 180° and 270° and their labels 0–3 (Gidaris et al., ICLR 2018).

    With ``all_rotations`` (the paper's choice) every image appears in all four
    rotations: ``4N`` images, labels ``[0]*N + [1]*N + [2]*N + [3]*N``.  Otherwise
    each image gets one uniformly drawn rotation (``N`` images).  Images must be
    square, so a rotated batch keeps its shape.
    """
    _check(images)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation prediction needs square images, got {images.shape[-2]}×{images.shape[-1]}")
    n = images.shape[0]
    rotations = [torch.rot90(images, k, dims=(2, 3)) for k in range(4)]
    if all_rotations:
        labels = torch.arange(4, device=images.device).repeat_interleave(n)
        return torch.cat(rotations), labels
    labels = torch.randint(0, 4, (n,), device=images.device, generator=generator)
    stacked = torch.stack(rotations)  # (4, N, C, H, W)
    return stacked[labels, torch.arange(n, device=images.device)], labels


# --------------------------------------------------------------------------- colour
def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor · images + (1 − factor) · other``, clamped to [0, 1] (torchvision's _blend)."""
    factor = factor.view(-1, 1, 1, 1)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def grayscale(images: Tensor) -> Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` as one channel (grey images are returned as they are)."""
    _check(images)
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(f"colour operations need 1 or 3 channels, got {images.shape[1]}")
    r, g, b = images.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Multiply each image by its ``factor`` (``(N,)``), clamped to [0, 1]."""
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its mean grey level: ``factor = 0`` gives a uniform grey image."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean.expand_as(images), factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its own grey version: ``factor = 0`` gives the grey image."""
    if images.shape[1] == 1:
        return images
    return _blend(images, grayscale(images).expand_as(images), factor)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB in [0, 1] → HSV in [0, 1] (hue as a fraction of a turn), per pixel."""
    r, g, b = images.unbind(1)
    maxc, _ = images.max(dim=1)
    minc, _ = images.min(dim=1)
    delta = maxc - minc
    saturation = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, saturation, maxc], dim=1)


def hsv_to_rgb(images: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = images.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # for sectors 0..5: R = v q p p t v, G = t v v q p p, B = p p t v v q
    table = torch.stack([
        torch.stack([v, q, p, p, t, v]),
        torch.stack([t, v, v, q, p, p]),
        torch.stack([p, p, t, v, v, q]),
    ])  # (3, 6, N, H, W)
    index = sector.unsqueeze(0).unsqueeze(0).expand(3, 1, *sector.shape)
    return table.gather(1, index).squeeze(1).transpose(0, 1)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate each image's hue by ``shift`` (``(N,)``, a fraction of a turn in [−0.5, 0.5])."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images)
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


def color_jitter(images: Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, p: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """torchvision's ``ColorJitter`` on a batch, applied to each image with probability ``p``.

    Factors are drawn per image: brightness, contrast and saturation from
    ``U[max(0, 1 − x), 1 + x]``, the hue shift from ``U[−hue, hue]``.  The four
    operations run in one random order per batch (torchvision draws one per
    image; the order matters little and a per-batch draw keeps it batched).
    """
    _check(images)
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], not {hue}")
    n = images.shape[0]
    ops = []
    if brightness > 0:
        factor = _uniform(n, max(0.0, 1 - brightness), 1 + brightness, images, generator)
        ops.append(lambda x, f=factor: adjust_brightness(x, f))
    if contrast > 0:
        factor = _uniform(n, max(0.0, 1 - contrast), 1 + contrast, images, generator)
        ops.append(lambda x, f=factor: adjust_contrast(x, f))
    if saturation > 0:
        factor = _uniform(n, max(0.0, 1 - saturation), 1 + saturation, images, generator)
        ops.append(lambda x, f=factor: adjust_saturation(x, f))
    if hue > 0:
        shift = _uniform(n, -hue, hue, images, generator)
        ops.append(lambda x, s=shift: adjust_hue(x, s))
    if not ops:
        return images
    order = torch.rand(len(ops), device=images.device, generator=generator).argsort()
    out = images
    for i in order.tolist():
        out = ops[i](out)
    if p >= 1:
        return out
    chosen = _bernoulli(n, p, images, generator).view(-1, 1, 1, 1)
    return torch.where(chosen, out, images)


def random_grayscale(images: Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """Replace each image by its grey version (on every channel) with probability ``p``."""
    _check(images)
    if images.shape[1] == 1:
        return images
    chosen = _bernoulli(images.shape[0], p, images, generator).view(-1, 1, 1, 1)
    return torch.where(chosen, grayscale(images).expand_as(images), images)
