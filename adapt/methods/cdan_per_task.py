"""CDAN once per task, for a multi-task source."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from .base import AdaptationMethod
from .cdan import CDAN


class CDANPerTask(AdaptationMethod):
    """Conditional adversarial adaptation applied to every task of a multi-task model (after Long et al. 2018).

    Long, Cao, Wang & Jordan, "Conditional Adversarial Domain Adaptation",
    NeurIPS 2018, defines CDAN for one label space: a discriminator sees the
    features ``f`` conditioned on the predictions ``g`` through ``T(f, g) =
    f ⊗ g``.  With several tasks on one shared encoder there is one ``g`` per
    task, so this method keeps one :class:`~adapt.methods.cdan.CDAN` per task —
    its own discriminator (and random projection where ``d·C`` is large) on the
    shared features conditioned on *that task's* softmax — and adds one term per
    task, ``domain_<task>``.  Under equal weighting the objective is the sum of
    the per-task CDAN objectives, ``Σ_t L_t + λ·L_cdan,t``, each as published;
    a weighting strategy can balance the per-task adversarial terms like any
    other term.  Every discriminator reverses its gradient into the same shared
    encoder, so the encoder is pushed to align the class-conditional
    distributions of every task at once.

    ``task_classes`` (task → number of classes) is supplied by the harness.
    Every other argument, and its default, is :class:`CDAN`'s and applies to
    each task's copy: λ = 1 (``trade_off``), the DANN ramp for the reversal
    coefficient, the exact map while d·C ≤ 4096, otherwise the randomized map
    with 1024 outputs, a 1024-1024 batch-norm discriminator, no entropy
    conditioning (``entropy_conditioning=True`` gives CDAN+E per task).
    The multi-task form is this library's (the CDAN paper has one task); the
    MultiMNIST → MultiMNIST-M suites use it with the DANN recipe's
    100-unit discriminator (``configs/suites/mtl_da_recipe.yaml``).
    """

    name = "cdan_per_task"
    derived_arguments = ("feature_dim", "task_classes")
    reads_every_task = True

    def __init__(
        self,
        feature_dim: int,
        task_classes: Mapping[str, int],
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
        if not task_classes:
            raise ValueError("task_classes is empty: CDAN per task needs at least one classification task")
        # by keyword: CDAN's arguments pass through unchanged whatever their order there
        cdan_arguments = dict(
            hidden_sizes=hidden_sizes, batch_norm=batch_norm, entropy_conditioning=entropy_conditioning,
            trade_off=trade_off, schedule=schedule, max_coefficient=max_coefficient, ramp_steps=ramp_steps,
            multilinear_limit=multilinear_limit, randomized_dim=randomized_dim,
            entropy_weight_normalization=entropy_weight_normalization,
        )
        self.per_task = nn.ModuleDict({
            task: CDAN(feature_dim, int(classes), **cdan_arguments) for task, classes in task_classes.items()
        })
        self.term_names = tuple(f"domain_{task}" for task in self.per_task)

    def alignment_terms(self, *, source_features, target_features, source_task_logits, target_task_logits,
                        progress, step=0, **_):
        missing = set(self.per_task) - set(source_task_logits)
        if missing:
            raise ValueError(f"cdan_per_task: no logits for task(s) {sorted(missing)}")
        terms = {}
        for task, cdan in self.per_task.items():
            (term,) = cdan.alignment_terms(
                source_features=source_features, target_features=target_features,
                source_logits=source_task_logits[task], target_logits=target_task_logits[task],
                progress=progress, step=step,
            ).values()
            terms[f"domain_{task}"] = term
        return terms

    def diagnostics(self):
        out = {}
        for task, cdan in self.per_task.items():
            out.update({key.replace("cdan/", f"cdan_per_task/{task}/"): value for key, value in cdan.diagnostics().items()})
        return out
