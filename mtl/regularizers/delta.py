"""DELTA: feature-map distance to the pretrained network, weighted by channel attention.

Xingjian Li, Haoyi Xiong, Hanchao Wang, Yuxuan Rao, Liping Liu, Zeyu Chen, Jun
Huan. "DELTA: DEep Learning Transfer using Feature Map with Attention for
Convolutional Networks". ICLR 2019.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..finetune import named_blocks
from ._state import NamedBuffers, half_squared_norm
from .base import Regularizer

__all__ = ["DELTA", "attention_weights", "default_feature_layers", "feature_map_distance"]


def feature_map_distance(current: Tensor, reference: Tensor, weights: Tensor) -> Tensor:
    """``½ Σ_n Σ_j C·W_j · mean_s (FM_j(x_n) − FM⁰_j(x_n))²`` for one layer.

    ``current`` and ``reference`` are ``(N, C, …)`` feature maps (``(N, C)``
    for vectors), ``weights`` the ``C`` channel weights (summing to 1, so
    ``C·W_j`` averages 1).  The squared distance of each channel is averaged
    over its spatial positions and summed over channels and over the batch,
    the normalisation of the authors' implementation (github.com/lixingjian/DELTA,
    ``reg_att_fea_map``), which their ``α`` was chosen for.
    """
    if current.shape != reference.shape:
        raise ValueError(f"feature maps differ in shape: {tuple(current.shape)} vs {tuple(reference.shape)}")
    n, c = current.shape[:2]
    if weights.shape != (c,):
        raise ValueError(f"expected {c} channel weights, got shape {tuple(weights.shape)}")
    squared = (current.float() - reference.float().detach()).pow(2).reshape(n, c, -1).mean(dim=2)  # (N, C)
    return 0.5 * (c * weights.float() * squared).sum()


def attention_weights(loss_increase: Tensor, temperature: float = 5.0) -> Tensor:
    """``softmax(z / T)`` of the standardised loss increases ``z`` (uniform when they are all equal).

    The authors' implementation standardises each layer's increases (mean 0,
    standard deviation 1) and divides by ``T = 5`` before the softmax.
    """
    std = loss_increase.std(unbiased=False)
    if not torch.isfinite(std) or std <= 0:
        return torch.full_like(loss_increase, 1.0 / loss_increase.numel())
    z = (loss_increase - loss_increase.mean()) / std
    return torch.softmax(z / temperature, dim=0)


def default_feature_layers(network: nn.Module) -> list[str]:
    """The module whose output ends each block of :func:`mtl.finetune.named_blocks`, input side first.

    For a block that is one module of the network, that module; for a group of
    consecutive layers (a Conv with its norm, activation and pooling), its last
    layer that is not dropout, so the feature map is not random in training.
    """
    names = {id(module): name for name, module in network.named_modules() if name}
    layers = []
    for _, block in named_blocks(network):
        if id(block) in names:
            layers.append(names[id(block)])
            continue
        members = [m for m in block.children() if id(m) in names]
        kept = [m for m in members if not isinstance(m, nn.modules.dropout._DropoutNd)] or members
        if not kept:
            raise ValueError(f"cannot find the modules of block {block!r} in the network; pass layers=[...]")
        layers.append(names[id(kept[-1])])
    return layers


@contextlib.contextmanager
def _eval_mode(network: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for m in network.modules()]
    network.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


class DELTA(Regularizer):
    """Feature-map distance to the pretrained network with channel attention (Li et al. 2019).

    ``Ω = α Σ_layers Σ_j W_j ‖FM_j(w, x) − FM_j(w⁰, x)‖² + β/2 ‖w_S̄‖²``.

    The network being fine-tuned should behave like the pretrained one (the
    starting point ``w⁰``) on the training images: the distance between their
    feature maps is penalised channel by channel, weighted by each channel's
    attention ``W_j``, and the new parameters ``w_S̄`` (task heads) get a plain
    weight decay.  Defaults of the authors' implementation
    (github.com/lixingjian/DELTA, ``train.py``): ``α = β = 0.01``, attention
    temperature 5, attention estimated on 4 batches; normalisation of the
    distance: :func:`feature_map_distance`.

    Attention (the paper's "supervised attention"): with the starting-point
    network and a classifier fitted on its frozen features for the target
    task, ``W_j`` is a softmax over the channels of a layer of the loss
    increase when channel ``j`` is removed (:meth:`fit_attention`; the loss
    function, holding that classifier and the labels, comes from the caller).
    Removing a channel zeroes its output in the watched layer (the authors zero
    the filter's weights, the same for a convolution without bias).  Until
    attention is fitted (or with ``attention=False``) every channel has weight
    ``1/C``: the paper's unweighted feature-map variant, up to normalisation.

    ``layers`` names the watched modules of the network (default:
    :func:`default_feature_layers`, the output of every block; the authors
    watch the last convolution of each ResNet stage).  Each must run once per
    forward.  The starting point (parameters and buffers, e.g. BatchNorm
    statistics) is copied into buffers when the module is built; the reference
    feature maps come from the same network run with those values
    (``torch.func.functional_call``) in eval mode, so dropout does not enter
    them (the fine-tuned network's own dropout still does).

    Use: ``with delta.capture(backbone): features = backbone(x)`` records the
    fine-tuned feature maps during the forward pass the task loss uses, then
    ``delta(backbone, x, heads.parameters())`` is the penalty.  Without a
    capture, ``delta(backbone, x)`` runs the forward pass itself.
    """

    name = "delta"
    derived_arguments = ("network", "input_shape")
    reads = ("network", "images", "new_parameters")

    def __init__(self, network: nn.Module, input_shape: Sequence[int], layers: Sequence[str] | None = None,
                 alpha: float = 0.01, beta: float = 0.01, attention: bool = True, attention_batches: int = 4,
                 attention_temperature: float = 5.0):
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be non-negative, not {alpha} and {beta}")
        if attention_batches < 1:
            raise ValueError(f"attention_batches must be at least 1, not {attention_batches}")
        if attention_temperature <= 0:
            raise ValueError(f"attention_temperature must be positive, not {attention_temperature}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.attention, self.attention_batches = bool(attention), int(attention_batches)
        self.attention_temperature = float(attention_temperature)
        self.layers = list(layers) if layers is not None else default_feature_layers(network)
        if not self.layers:
            raise ValueError("DELTA needs at least one layer to watch")
        modules = dict(network.named_modules())
        unknown = [name for name in self.layers if name not in modules or not name]
        if unknown:
            raise ValueError(f"layers {unknown} are not modules of the network; some of its modules: "
                             f"{', '.join(list(n for n in modules if n)[:20])}")
        self.starting_point = NamedBuffers({**dict(network.named_parameters()), **dict(network.named_buffers())})
        first = next(network.parameters(), None)
        probe = torch.zeros(2, *input_shape, device=first.device if first is not None else "cpu")
        with torch.no_grad(), _eval_mode(network):
            maps = self._watch(network, lambda: network(probe))
        for i, name in enumerate(self.layers):
            channels = maps[name].shape[1]
            self.register_buffer(f"attention_{i}", torch.full((channels,), 1.0 / channels))
        self.register_buffer("attention_fitted", torch.tensor(False))
        self._captured: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------ feature maps
    def _watch(self, network: nn.Module, run: Callable[[], Any],
               remove: tuple[str, Sequence[int]] | None = None) -> dict[str, Tensor]:
        """Run ``run`` with hooks that record the watched layers' outputs.  ``remove = (layer,
        channels)``: the batch holds ``len(channels)`` equal blocks, and block ``i`` has channel
        ``channels[i]`` of that layer zeroed."""
        store: dict[str, Tensor] = {}
        modules = dict(network.named_modules())
        handles = []

        def hook(name):
            def record(module, args, output):
                if name in store:
                    raise RuntimeError(f"DELTA: layer {name!r} ran twice in one forward pass; watch a module that runs once")
                if remove is not None and remove[0] == name:
                    channels = list(remove[1])
                    blocks = output.reshape(len(channels), -1, *output.shape[1:]).clone()
                    blocks[torch.arange(len(channels)), :, torch.tensor(channels)] = 0
                    output = blocks.reshape(output.shape)
                store[name] = output
                return output
            return record

        try:
            for name in self.layers:
                handles.append(modules[name].register_forward_hook(hook(name)))
            run()
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.layers if name not in store]
        if missing:
            raise RuntimeError(f"DELTA: layers {missing} did not run in the forward pass")
        return store

    @contextlib.contextmanager
    def capture(self, network: nn.Module) -> Iterator[dict[str, Tensor]]:
        """Record the watched feature maps of the forward pass(es) run inside the block."""
        store: dict[str, Tensor] = {}
        modules = dict(network.named_modules())
        handles = [modules[name].register_forward_hook(lambda m, a, out, name=name: store.__setitem__(name, out))
                   for name in self.layers]
        self._captured = store
        try:
            yield store
        finally:
            for handle in handles:
                handle.remove()

    def reference_maps(self, network: nn.Module, images: Tensor, remove: tuple[str, Sequence[int]] | None = None,
                       output: list | None = None) -> dict[str, Tensor]:
        """The watched feature maps of the starting-point network on ``images`` (eval mode, no gradient)."""
        state = self.starting_point.as_dict()
        with torch.no_grad(), _eval_mode(network):
            def run():
                result = functional_call(network, state, (images,), strict=False)
                if output is not None:
                    output.append(result)
            return self._watch(network, run, remove)

    def channel_weights(self) -> list[Tensor]:
        """``W`` of every watched layer, in the order of :attr:`layers`."""
        return [getattr(self, f"attention_{i}") for i in range(len(self.layers))]

    # ------------------------------------------------------------------ penalty
    def forward(self, network: nn.Module, images: Tensor, new_parameters: Iterable[Tensor] = ()) -> Tensor:
        current, self._captured = self._captured, None
        if not current:
            current = self._watch(network, lambda: network(images))
        reference = self.reference_maps(network, images)
        distance = None
        for i, name in enumerate(self.layers):
            if current[name].shape[0] != images.shape[0]:
                raise ValueError(f"DELTA: the captured maps of {name!r} hold {current[name].shape[0]} images but "
                                 f"{images.shape[0]} were given; pass the images of the captured forward pass")
            term = feature_map_distance(current[name], reference[name], self.channel_weights()[i])
            distance = term if distance is None else distance + term
        penalty = self.alpha * distance
        new = list(new_parameters)
        if new and self.beta:
            penalty = penalty + self.beta * half_squared_norm(new)
        return penalty

    # ------------------------------------------------------------------ attention
    @torch.no_grad()
    def fit_attention(self, network: nn.Module, batches: Iterable[tuple[Tensor, Any]],
                      loss_fn: Callable[[Tensor, Any], Tensor], max_images: int = 4096) -> list[Tensor]:
        """Estimate the channel attention on ``batches`` of ``(images, targets)``; returns it per layer.

        ``loss_fn(network_output, targets)`` is the target-task loss of the
        starting-point network's output (features) through a classifier fitted
        on them.  For every watched channel: the mean over the batches of the
        loss with the channel removed minus the loss without, then
        :func:`attention_weights` per layer.  The cost is one batch's forward
        pass per channel; removals run together, as copies of the batch of at
        most ``max_images`` images in all (eval mode, so the copies do not
        interact).
        """
        increases = [torch.zeros_like(w) for w in self.channel_weights()]
        count = 0
        for images, targets in batches:
            out: list = []
            self.reference_maps(network, images, output=out)
            base = float(loss_fn(out[0], targets))
            per_pass = max(1, max_images // images.shape[0])
            for i, name in enumerate(self.layers):
                channels = list(range(increases[i].numel()))
                for start in range(0, len(channels), per_pass):
                    chunk = channels[start:start + per_pass]
                    repeated = images.repeat(len(chunk), *([1] * (images.dim() - 1)))
                    out = []
                    self.reference_maps(network, repeated, remove=(name, chunk), output=out)
                    for block, j in zip(out[0].chunk(len(chunk)), chunk):
                        increases[i][j] += float(loss_fn(block, targets)) - base
            count += 1
        if count == 0:
            raise ValueError("fit_attention: no batches")
        weights = []
        for current, increase in zip(self.channel_weights(), increases):
            w = attention_weights(increase / count, self.attention_temperature)
            current.copy_(w)
            weights.append(w)
        self.attention_fitted.fill_(True)
        return weights

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, layers={self.layers}"
