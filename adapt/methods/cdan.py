"""Conditional Domain Adversarial Network (CDAN, CDAN+E)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..discriminator import DomainDiscriminator
from ..grl import reverse_gradient
from ..losses._precision import at_least_float32
from ..losses.conditional import (
    RandomizedMultilinearMap,
    conditional_domain_loss,
    entropy_weights,
    multilinear_map,
)
from ..schedules import SCHEDULES, ramp_input
from .base import AdaptationMethod


class CDAN(AdaptationMethod):
    """Conditional adversarial adaptation: a discriminator on features ⊗ predictions (Long et al. 2018).

    Long, Cao, Wang & Jordan, "Conditional Adversarial Domain Adaptation",
    NeurIPS 2018.

    Adds the term ``domain``: ``trade_off ·`` the (optionally entropy-weighted)
    binary cross-entropy of a domain discriminator fed with the multilinear
    conditioning ``T(f, g) = f ⊗ g`` of the features ``f`` and the softmax
    predictions ``g``, through a gradient reversal layer.  Conditioning on
    ``g`` aligns class-conditional rather than marginal feature distributions.

    Extra networks: the discriminator (``hidden_sizes``, ``batch_norm`` as in
    :class:`~adapt.discriminator.DomainDiscriminator`) and, when
    ``feature_dim · num_classes > multilinear_limit``, a fixed random
    projection (:class:`~adapt.losses.conditional.RandomizedMultilinearMap`,
    ``randomized_dim`` outputs) replacing the exact outer product.

    ``entropy_conditioning=True`` is CDAN+E: examples are weighted by
    ``1 + exp(−H(g))`` so that confident, transferable ones count more.
    ``entropy_weight_normalization`` says how the weights are normalised:
    ``"per_domain"`` (default) rescales each domain's weights to sum to its
    batch size, as the authors' code (thuml/CDAN, ``loss.py``) does, so both
    domains weigh the same in total; ``"joint"`` rescales the weights of the
    joint batch to sum to its size, as Transfer-Learning-Library does
    (``tllib/alignment/cdan.py``), so the more confident domain weighs more.

    Paper defaults: λ = 1 (``trade_off``); the GRL coefficient follows
    ``schedule`` (the DANN ramp 2/(1+exp(−10p)) − 1) times ``max_coefficient``,
    over the whole run or, with ``ramp_steps``, over that many absolute steps
    (TLLib: 10000, :func:`adapt.schedules.ramp_input`);
    the exact map while d·C ≤ 4096, otherwise the randomized map with 1024
    outputs; a 1024-1024 discriminator.  As in the reference code, ``g`` is
    detached before the map, so the adversarial signal trains the features, not
    the classifier.
    """

    name = "cdan"
    derived_arguments = ("feature_dim", "num_classes")
    term_names = ("domain",)

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (1024, 1024),
        batch_norm: bool = True,
        entropy_conditioning: bool = False,
        trade_off: float = 1.0,
        schedule: str = "dann",
        max_coefficient: float = 1.0,
        ramp_steps: int | None = None,
        multilinear_limit: int = 4096,
        randomized_dim: int = 1024,
        entropy_weight_normalization: str = "per_domain",
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
        if entropy_weight_normalization not in ("per_domain", "joint"):
            raise ValueError(
                f"entropy_weight_normalization must be 'per_domain' or 'joint', got {entropy_weight_normalization!r}"
            )
        self.entropy_weight_normalization = entropy_weight_normalization
        if feature_dim * num_classes > multilinear_limit:
            self.randomized_map = RandomizedMultilinearMap(feature_dim, num_classes, randomized_dim)
            conditioned_dim = randomized_dim
        else:
            self.randomized_map = None
            conditioned_dim = feature_dim * num_classes
        self.discriminator = DomainDiscriminator(conditioned_dim, hidden_sizes, batch_norm)
        self.entropy_conditioning = bool(entropy_conditioning)
        self.trade_off = float(trade_off)
        self.schedule = SCHEDULES[schedule]
        self.max_coefficient = float(max_coefficient)
        ramp_input(0.0, 0, ramp_steps)  # validate early
        self.ramp_steps = ramp_steps
        self.coefficient = 0.0
        self.domain_accuracy: torch.Tensor | None = None

    def condition(self, features, predictions):
        """``T(f, g)``: the exact multilinear map, or its randomized stand-in for large d·C."""
        if self.randomized_map is None:
            return multilinear_map(features, predictions)
        return self.randomized_map(features, predictions)

    def alignment_terms(self, *, source_features, target_features, source_logits, target_logits, progress, step=0, **_):
        self.coefficient = self.max_coefficient * self.schedule(ramp_input(progress, step, self.ramp_steps))
        num_source = source_features.shape[0]
        features = torch.cat([source_features, target_features])
        # detached: the reference code conditions on g without training the classifier adversarially
        predictions = at_least_float32(torch.cat([source_logits, target_logits])).softmax(dim=1).detach()
        conditioned = self.condition(features, predictions)
        # one discriminator pass over both domains, so its batch norm sees the joint batch (as in DANN)
        domain_logits = at_least_float32(self.discriminator(reverse_gradient(conditioned, self.coefficient)))
        if self.entropy_conditioning and self.entropy_weight_normalization == "joint":
            joint = entropy_weights(predictions)  # summing to the joint batch size (TLLib)
            weights = joint[:num_source], joint[num_source:]
        elif self.entropy_conditioning:
            weights = entropy_weights(predictions[:num_source]), entropy_weights(predictions[num_source:])
        else:
            weights = None, None
        loss = conditional_domain_loss(domain_logits[:num_source], domain_logits[num_source:], *weights)
        is_source = torch.arange(domain_logits.shape[0], device=domain_logits.device) < num_source
        # kept as a tensor: converting here would synchronise a GPU every step
        self.domain_accuracy = ((domain_logits.detach() > 0) == is_source).float().mean()
        return {"domain": self.trade_off * loss}

    def diagnostics(self):
        out = {"cdan/grl_coefficient": self.coefficient}
        if self.domain_accuracy is not None:
            out["cdan/domain_accuracy"] = float(self.domain_accuracy)
        return out


class CDANE(CDAN):
    """CDAN with entropy conditioning of the domain loss, CDAN+E (Long et al. 2018).

    :class:`CDAN` with ``entropy_conditioning=True``: the same paper, and the
    same arguments and defaults otherwise (``ramp_steps=10000`` and
    ``entropy_weight_normalization="joint"`` are Transfer-Learning-Library's
    ``cdan.py --entropy``).
    """

    name = "cdan_e"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (1024, 1024),
        batch_norm: bool = True,
        trade_off: float = 1.0,
        schedule: str = "dann",
        max_coefficient: float = 1.0,
        ramp_steps: int | None = None,
        multilinear_limit: int = 4096,
        randomized_dim: int = 1024,
        entropy_weight_normalization: str = "per_domain",
    ):
        super().__init__(
            feature_dim,
            num_classes,
            hidden_sizes,
            batch_norm,
            entropy_conditioning=True,
            trade_off=trade_off,
            schedule=schedule,
            max_coefficient=max_coefficient,
            ramp_steps=ramp_steps,
            multilinear_limit=multilinear_limit,
            randomized_dim=randomized_dim,
            entropy_weight_normalization=entropy_weight_normalization,
        )
