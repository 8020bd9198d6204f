"""Self-supervised objectives and their batched augmentations (mtl/selfsup): each operation
against an independent reference (torchvision's per-image functions, colorsys, the NT-Xent
formula written out), and the properties the objectives rely on."""
import colorsys
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from mtl.selfsup import (
    ContrastiveLearning,
    RotationPrediction,
    SimCLRAugmentation,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    grayscale,
    hsv_to_rgb,
    nt_xent_loss,
    random_crop_boxes,
    random_grayscale,
    random_horizontal_flip,
    random_resized_crop,
    resized_crop,
    rgb_to_hsv,
    rotate_batch,
)


def _images(n=6, c=3, size=12, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ geometry
def test_resized_crop_of_the_whole_image_is_the_identity_and_a_flip_mirrors():
    x = _images()
    whole = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).expand(6, 4)
    torch.testing.assert_close(resized_crop(x, whole), x, atol=1e-6, rtol=0)
    flip = torch.tensor([True, False] * 3)
    out = resized_crop(x, whole, flip=flip)
    torch.testing.assert_close(out[0::2], x[0::2].flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1::2], x[1::2], atol=1e-6, rtol=0)


def test_resized_crop_equals_cropping_then_bilinear_resizing():
    x = _images(n=3, size=16)
    boxes = torch.tensor([[4.0, 4.0, 8.0, 8.0], [0.0, 8.0, 8.0, 8.0], [2.0, 0.0, 12.0, 6.0]])
    out = resized_crop(x, boxes, size=16)
    for i, (top, left, h, w) in enumerate(boxes.long().tolist()):
        expected = F.interpolate(x[i : i + 1, :, top : top + h, left : left + w], size=(16, 16), mode="bilinear",
                                 align_corners=False)
        # inside the box the two agree; the outermost output pixels sample within half a pixel of the
        # box edge, where we interpolate with the neighbours outside the box and a crop clamps
        torch.testing.assert_close(out[i, :, 1:-1, 1:-1], expected[0, :, 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_crop_boxes_lie_in_the_image_with_the_drawn_area_and_ratio():
    g = torch.Generator().manual_seed(0)
    boxes = random_crop_boxes(4000, 28, 28, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=g)
    top, left, h, w = boxes.unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all())
    area = h * w / 28**2
    aspect = w / h
    # rounding to whole pixels moves area and ratio a little off their ranges
    assert float(area.min()) > 0.05 and float(area.max()) <= 1.0
    assert float(aspect.min()) > 0.6 and float(aspect.max()) < 1.7
    # boxes that must be clipped by the image are redrawn, so the mean area is below U(0.08, 1)'s 0.54
    assert 0.35 < float(area.mean()) < 0.56
    # a fixed area and ratio: every box has that size
    fixed = random_crop_boxes(50, 20, 20, scale=(0.25, 0.25), ratio=(1.0, 1.0), generator=g)
    assert bool((fixed[:, 2:] == 10).all())


def test_random_resized_crop_is_per_image_and_reproducible_with_a_generator():
    x = _images(n=1).expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    a = random_resized_crop(x, generator=torch.Generator().manual_seed(3))
    b = random_resized_crop(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert len({tuple(img.flatten()[:20].tolist()) for img in a}) > 1  # different crops per image
    assert a.shape == x.shape
    assert random_resized_crop(x, size=6).shape == (8, 3, 6, 6)
    torch.testing.assert_close(random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(x, scale=(0.5, 0.2))


def test_horizontal_flip_flips_about_the_chosen_fraction():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(2000, 1, 4, 4)
    out = random_horizontal_flip(x, p=0.3, generator=torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert abs(float(flipped.float().mean()) - 0.3) < 0.04


def test_rotate_batch_gives_four_rotations_with_their_labels():
    x = _images(n=3)
    rotated, labels = rotate_batch(x)
    assert rotated.shape == (12, 3, 12, 12) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for k in range(4):
        torch.testing.assert_close(rotated[3 * k : 3 * k + 3], torch.rot90(x, k, dims=(2, 3)))
    # four quarter turns are the identity; 180° is both flips
    torch.testing.assert_close(torch.rot90(rotated[3:6], 3, dims=(2, 3)), x)
    torch.testing.assert_close(rotated[6:9], x.flip(-1).flip(-2))
    one, labels = rotate_batch(x, all_rotations=False, generator=torch.Generator().manual_seed(0))
    assert one.shape == x.shape
    for i, k in enumerate(labels.tolist()):
        torch.testing.assert_close(one[i], torch.rot90(x[i], k, dims=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.rand(2, 1, 4, 5))


# ------------------------------------------------------------------ colour
def test_colour_operations_match_torchvision_image_by_image():
    x = _images(n=5)
    g = torch.Generator().manual_seed(1)
    factors = 0.2 + 1.6 * torch.rand(5, generator=g)
    shifts = torch.rand(5, generator=g) - 0.5
    ours = {
        "brightness": adjust_brightness(x, factors),
        "contrast": adjust_contrast(x, factors),
        "saturation": adjust_saturation(x, factors),
        "hue": adjust_hue(x, shifts),
    }
    for i in range(5):
        f, s = float(factors[i]), float(shifts[i])
        torch.testing.assert_close(ours["brightness"][i], TF.adjust_brightness(x[i], f), atol=1e-6, rtol=0)
        torch.testing.assert_close(ours["contrast"][i], TF.adjust_contrast(x[i], f), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours["saturation"][i], TF.adjust_saturation(x[i], f), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours["hue"][i], TF.adjust_hue(x[i], s), atol=1e-5, rtol=0)
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)


def test_hsv_conversion_matches_colorsys_and_round_trips():
    x = _images(n=2, size=5)
    hsv = rgb_to_hsv(x)
    for n, i, j in [(0, 0, 0), (0, 2, 3), (1, 4, 1), (1, 3, 3)]:
        expected = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
        assert hsv[n, :, i, j].tolist() == pytest.approx(expected, abs=1e-6)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-6, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.4)
    assert rgb_to_hsv(grey)[:, :2].abs().max() == 0  # no hue or saturation for grey
    torch.testing.assert_close(adjust_hue(x, torch.zeros(2)), x, atol=1e-6, rtol=0)


def test_color_jitter_and_grayscale_probabilities_and_grey_images():
    x = _images(n=400, size=4)
    unchanged = color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.0)
    torch.testing.assert_close(unchanged, x)
    out = color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(1).float().mean()
    assert abs(float(changed) - 0.8) < 0.07
    grey = random_grayscale(x, p=0.25, generator=torch.Generator().manual_seed(0))
    made_grey = (grey[:, 0] == grey[:, 1]).flatten(1).all(1) & (grey[:, 1] == grey[:, 2]).flatten(1).all(1)
    assert abs(float(made_grey.float().mean()) - 0.25) < 0.07
    one = _images(n=4, c=1)
    torch.testing.assert_close(adjust_saturation(one, torch.full((4,), 0.1)), one)
    torch.testing.assert_close(adjust_hue(one, torch.full((4,), 0.3)), one)
    assert color_jitter(one, 0.4, 0.4, 0.4, 0.1).shape == one.shape
    assert torch.all((out >= 0) & (out <= 1))


def test_simclr_augmentation_makes_two_different_views_in_range():
    aug = SimCLRAugmentation(flip=False)
    x = _images(n=8, size=16)
    v1, v2 = aug(x), aug(x)
    assert v1.shape == x.shape and not torch.equal(v1, v2)
    assert torch.all((v1 >= 0) & (v1 <= 1))
    with pytest.raises(ValueError, match="jitter_strength"):
        SimCLRAugmentation(jitter_strength=3.0)


# ------------------------------------------------------------------ NT-Xent
def _nt_xent_by_the_formula(z1, z2, tau):
    """Chen et al. 2020, Eq. 1 and Algorithm 1: views 2k-1 and 2k are a positive pair."""
    z = []
    for a, b in zip(z1, z2):
        z += [a, b]
    sim = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    n2 = len(z)

    def ell(i, j):
        denominator = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / denominator)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n2 // 2)) / n2


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_equals_the_paper_formula(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    assert float(nt_xent_loss(z1, z2, tau)) == pytest.approx(_nt_xent_by_the_formula(z1, z2, tau), rel=1e-5)


def test_nt_xent_properties():
    n, tau = 4, 0.5
    # identical positives, orthogonal negatives: every row is the same softmax over 2N - 1 entries
    z = torch.eye(8)[:n]
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert float(nt_xent_loss(z, z.clone(), tau)) == pytest.approx(expected, rel=1e-6)
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    base = nt_xent_loss(z1, z2, tau)
    torch.testing.assert_close(nt_xent_loss(3.0 * z1, 0.5 * z2, tau), base)  # cosine similarity: scale-free
    torch.testing.assert_close(nt_xent_loss(z2, z1, tau), base)  # symmetric in the two views
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(nt_xent_loss(z1[perm], z2[perm], tau), base)  # order of samples does not matter
    assert float(base) > 0
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z1, z2, 0.0)


# ------------------------------------------------------------------ the objectives
class _Encoder(nn.Module):
    def __init__(self, channels=1, size=8, features=16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, features), nn.ReLU())

    def forward(self, x):
        return self.net(x)


def test_rotation_prediction_learns_to_tell_rotations_apart():
    torch.manual_seed(0)
    images = torch.zeros(32, 1, 8, 8)
    images[:, :, :3, :2] = 1.0  # a mark in one corner: its position reveals the rotation
    images += 0.1 * torch.rand_like(images)
    encoder = _Encoder()
    objective = RotationPrediction(16)
    opt = torch.optim.Adam([*encoder.parameters(), *objective.parameters()], lr=0.01)
    first = float(objective(images, encoder).detach())
    assert first == pytest.approx(math.log(4), abs=0.3)
    for _ in range(60):
        opt.zero_grad()
        objective(images, encoder).backward()
        opt.step()
    metrics = objective.metrics(images, encoder)
    assert float(metrics["loss"]) < 0.2 and float(metrics["accuracy"]) == 1.0


def test_contrastive_learning_trains_encoder_and_head_and_reports_metrics():
    torch.manual_seed(0)
    encoder = _Encoder(channels=3, size=8)
    objective = ContrastiveLearning(16, projection_dim=8, flip=False)
    images = torch.rand(10, 3, 8, 8)
    loss = objective(images, encoder)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*encoder.parameters(), *objective.head.parameters()])
    assert float(loss.detach()) <= math.log(19) + 1.0  # at most about log(2N − 1) for random projections
    metrics = objective.metrics(images, encoder, generator=torch.Generator().manual_seed(0))
    assert set(metrics) == {"loss", "accuracy"} and 0 <= float(metrics["accuracy"]) <= 1
    again = objective.metrics(images, encoder, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(metrics["loss"], again["loss"])  # a seeded generator fixes the views
    with pytest.raises(ValueError, match="at least 2"):
        objective(images[:1], encoder)
