"""Self-supervised objectives and fine-tuning regularisers as more named loss terms of a problem.

A problem computes its own terms (task losses, domain alignment) and then
asks :class:`ExtraTerms` for these: each self-supervised objective
(``mtl.selfsup``) on the images of the domains it reads, each regulariser
(``mtl.regularizers``) on what its ``reads`` flag names.  The weighting then
balances all terms alike.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.selfsup import SelfSupervisedObjective

from ..batching import Preprocess

#: what a regulariser may read (its ``reads`` flag), and where it comes from
REGULARIZER_INPUTS = ("pretrained_parameters", "new_parameters", "features", "network", "images")


def unnormalise(preprocess: Preprocess, x: Tensor) -> Tensor:
    """A normalised batch back in [0, 1] pixel units, where the colour augmentations act."""
    return x * preprocess.std + preprocess.mean


def normalise(preprocess: Preprocess, x: Tensor) -> Tensor:
    return (x - preprocess.mean) / preprocess.std


class ExtraTerms(nn.Module):
    """``selfsup``: name → (objective, domains it reads); ``regularizers``: name → regulariser.

    Self-supervised objectives run the backbone on their own (augmented,
    rotated) images; the images of every domain they read are concatenated into
    one batch, so "rotation on source and target" is one term.  Regularisers
    read the backbone's parameters, the labelled batch's features, or the
    network with the images of the problem's forward pass (DELTA, whose feature
    maps are recorded during that pass by :meth:`watch`).
    """

    def __init__(self, selfsup: Mapping[str, tuple[SelfSupervisedObjective, Sequence[str]]],
                 regularizers: Mapping[str, nn.Module]):
        super().__init__()
        self.selfsup = nn.ModuleDict({name: objective for name, (objective, _) in selfsup.items()})
        self.domains = {name: tuple(domains) for name, (_, domains) in selfsup.items()}
        self.regularizers = nn.ModuleDict(dict(regularizers))
        for name, regularizer in self.regularizers.items():
            unknown = set(getattr(regularizer, "reads", ("?",))) - set(REGULARIZER_INPUTS)
            if unknown:
                raise ValueError(f"regulariser {name!r} reads {sorted(unknown)}; a regulariser may read {REGULARIZER_INPUTS}")

    def term_names(self) -> list[str]:
        return [*self.selfsup, *self.regularizers]

    def reads_domain(self, domain: str) -> bool:
        return any(domain in domains for domains in self.domains.values())

    @contextlib.contextmanager
    def watch(self, backbone: nn.Module) -> Iterator[None]:
        """Record what the regularisers need from the forward pass run inside the block."""
        with contextlib.ExitStack() as stack:
            for regularizer in self.regularizers.values():
                if hasattr(regularizer, "capture"):
                    stack.enter_context(regularizer.capture(backbone))
            yield

    def selfsup_terms(self, backbone: nn.Module, preprocess: Preprocess, batches: Mapping[str, Tensor | None],
                      generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Each objective on the (normalised) batches of its domains."""
        encoder = lambda x: backbone(normalise(preprocess, x))  # noqa: E731
        terms = {}
        for name, objective in self.selfsup.items():
            parts = [batches[d] for d in self.domains[name]]
            if any(p is None for p in parts):
                raise RuntimeError(f"self-supervised term {name!r} reads domains {self.domains[name]} but not all were drawn")
            images = unnormalise(preprocess, torch.cat(parts) if len(parts) > 1 else parts[0])
            terms[name] = objective(images, encoder, generator)
        return terms

    def terms(self, *, model: nn.Module, preprocess: Preprocess, batches: Mapping[str, Tensor | None],
              features: Tensor | None = None, images: Tensor | None = None) -> dict[str, Tensor]:
        """All extra terms of one step.  ``batches``: the normalised batch of each domain (None where
        none was drawn); ``features``: the backbone features of the labelled batch; ``images``: the
        input of the forward pass :meth:`watch` recorded."""
        backbone = model.backbone
        terms = self.selfsup_terms(backbone, preprocess, batches)
        inputs = {
            "pretrained_parameters": lambda: dict(backbone.named_parameters()),
            "new_parameters": lambda: list(model.heads.parameters()) if hasattr(model, "heads") else [],
            "features": lambda: features,
            "network": lambda: backbone,
            "images": lambda: images,
        }
        for name, regularizer in self.regularizers.items():
            terms[name] = regularizer(**{key: inputs[key]() for key in regularizer.reads})
        return terms
