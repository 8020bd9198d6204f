"""pytorch-adapt's adapters and hooks driving the training step of one of our runs.

Used by the equal-budget comparison (:mod:`benchmarks.pytorch_adapt_compare`) and the
step-speed benchmark (:mod:`benchmarks.speed.dann_speed`).  A :class:`ReferenceStep`
takes a trainer built by :func:`benchmarks.experiment.build_trainer` from the same
config as our run (so the same network, initial weights, data streams, seed,
preprocessing and memory format) and hands its modules to a pytorch-adapt 0.0.83
adapter: ``G`` = the backbone, ``C`` = the task head, ``D`` = the method's
discriminator.  One optimiser per model with our optimiser's settings (for SGD and
Adam, one optimiser per parameter group is the same update as one over all of them),
our learning-rate schedule, and our autocast context around the adapter's step.

The adapters are configured to optimise **our** objective, so that a difference
in accuracy points at the training engine, not at a different loss:

* every hook's losses are combined with ``SumWeighter`` and our trade-offs (its
  default ``MeanWeighter`` would divide the whole objective by the number of terms);
* DANN/CDAN: its domain labels are source 0, target 1 and it reports one mean BCE per
  domain; ``D`` is our discriminator with its logit negated (ours labels source 1),
  and each domain's BCE is weighted ``trade_off / 2`` (= our mean over the joint
  batch, for equal batch sizes).  The gradient-reversal coefficient follows our
  schedule, updated before every step;
* CDAN: the feature combiner is our conditioning map (randomized above d·C = 4096)
  on *detached* softmax predictions, as ours (pytorch-adapt's ``CDANNE`` lets the
  reversed gradient reach the classifier through the predictions, and weights by
  entropy);
* BSP: its DANN adapter as above plus its ``BSPHook`` (top-``k`` squared singular
  values of the source and of the target features, summed) weighted ``bsp_trade_off``;
* MCC: temperature 2.5 (its default is 1);
* BNM: its ``BNMLoss`` on float32 logits: under bf16 autocast it fails
  (``torch.linalg.matrix_norm`` has no bfloat16 kernel); ours computes in float32 too;
* DAN: its ``MMDLoss`` with kernel scales 2^{2..−2} and weight ``5 · trade_off``
  (it averages the five kernels, we sum them); its bandwidth is **its** batch
  heuristic (median source–source squared distance), not ours (mean pairwise
  squared distance of the joint batch): a differing default, kept;
* MCD: ``C`` returns both classifiers' logits; three optimisation steps like ours
  (A: both classifiers and G on source CE; B: classifiers on source CE − discrepancy
  with G's features detached; C: G on the discrepancy, ``num_generator_steps``
  times).

* JAN: its ``Aligner`` adapter with a ``JointAlignerHook`` on (features, softmax);
  one ``MMDLoss`` cannot hold JAN's product kernel (5 Gaussians on the features,
  one at γ = 1.68 on the softmax), so the hook's ``loss_fn`` is
  :class:`_JointMMD`: its ``get_mmd_dist_mats`` and ``get_mmd_quadratic`` /
  ``get_mmd_linear`` with per-layer kernel scales, at our bandwidth (the joint
  batch's mean pairwise squared distance) and our ramp, ×5 (it averages kernels).

Not wired here: CDAN+E and AdaBN (AdaBN needs pytorch-adapt's own BN layers, and
the LeNet of the digits configs has no batch norm for it to re-estimate).

Two engine differences remain, by design of each library: pytorch-adapt forwards the
source and the target batch through ``G`` (and through ``D``) separately, where our
engine forwards them as one joint batch.  Batch norm therefore sees per-domain
statistics there and joint ones here (our DANN discriminator has BN by default), and
dropout draws its masks in a different order.  Without batch norm or dropout the two
steps give the same parameters to float32 rounding, for every method above except DAN
(the bandwidth heuristic): ``tests/test_pytorch_adapt_compare.py`` checks it.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from adapt.losses.mmd import mean_pairwise_squared_distance
from adapt.schedules import ramp_input

from .engine import lr_factor

#: methods with a pytorch-adapt counterpart wired here
METHODS = ("source_only", "dann", "cdan", "bsp", "mcc", "mcd", "bnm", "entropy_min", "info_max", "afn", "coral", "dan", "jan")


def import_error() -> str | None:
    """None when pytorch-adapt can be imported, else why not (with the install hint)."""
    try:
        _import()
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return f"pytorch-adapt is not importable ({type(error).__name__}: {error}); pip install '.[reference]'"
    return None


def _import():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources / torchmetrics 0.9.3 deprecation warnings at import
        import pytorch_adapt  # noqa: F401
        from pytorch_adapt import adapters, containers, hooks, layers, weighters
    return adapters, containers, hooks, layers, weighters


class _Negated(nn.Module):
    """Our discriminator with its logit negated: pytorch-adapt labels source 0, we label it 1."""

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x):
        return -self.discriminator(x)


class _TwoClassifiers(nn.Module):
    """MCD's ``C`` for pytorch-adapt: both classifiers' logits as a list."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return [self.first(x), self.second(x)]


class _InFloat32(nn.Module):
    """A pytorch-adapt loss evaluated on float32 copies of its inputs (for losses without a bfloat16 kernel)."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, *inputs):
        return self.loss(*(x.float() for x in inputs))


class _JointMMD:
    """JAN's loss for pytorch-adapt's ``JointAlignerHook``, from its own MMD functions.

    ``source`` and ``target`` are the hook's lists ``[features, softmax]``.  Its
    ``get_mmd_dist_mats`` gives the squared distances; the kernel scales are ours
    (features: ``kernel_mul^{−(u − K//2)} / base`` with ``base`` the joint batch's
    mean pairwise squared distance, detached; predictions: ``1 / prediction_bandwidth``);
    ``coefficient`` (trade-off × ramp × K, set every step) turns its kernel mean into
    our kernel sum.
    """

    def __init__(self, method, layer_utils, distance):
        self.method, self.layer_utils, self.distance = method, layer_utils, distance
        self.coefficient = 0.0

    def __call__(self, source, target):
        features_kernel, prediction_kernel = self.method.jmmd.kernels
        source = [x.float() for x in source]
        target = [x.float() for x in target]
        xx, yy, zz, _ = self.layer_utils.get_mmd_dist_mats(source, target, self.distance, 1.0)
        with torch.no_grad():
            base = mean_pairwise_squared_distance(torch.cat([source[0], target[0]])).clamp_min(torch.finfo(torch.float32).eps)
        count, mul = features_kernel.num_kernels, features_kernel.kernel_mul
        exponents = torch.arange(count, dtype=base.dtype, device=base.device) - count // 2
        feature_scales = -(mul ** -exponents) / base
        prediction_scale = torch.tensor(-1.0 / prediction_kernel.bandwidth, dtype=base.dtype, device=base.device)
        mmd = self.layer_utils.get_mmd_linear if self.method.jmmd.linear else self.layer_utils.get_mmd_quadratic
        return self.coefficient * mmd(xx, yy, zz, [feature_scales, prediction_scale])


class _DetachedCondition(nn.Module):
    """CDAN's feature combiner: our conditioning map on detached predictions (as our CDAN)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, features, predictions):
        return self.method.condition(features, predictions.detach())


class ReferenceStep:
    """One pytorch-adapt training step on ``trainer``'s modules; see the module docstring.

    ``step(progress)`` draws the next source and target batches from the trainer's
    own streams (the same sequence our engine would draw), sets the learning rate
    and the GRL coefficient for ``progress``, and runs the adapter's
    ``training_step`` under the trainer's autocast context.
    """

    def __init__(self, trainer, method_name: str):
        if method_name not in METHODS:
            raise ValueError(f"no pytorch-adapt counterpart wired for {method_name!r}; available: {', '.join(METHODS)}")
        adapters, containers, hooks, layers, weighters = _import()
        self.trainer = trainer
        self.problem = problem = trainer.problem
        (self.task_name,) = problem.tasks
        method = problem.method
        self.method_name = method_name
        backbone, head = problem.model.backbone, problem.model.heads[self.task_name]
        optimizer = trainer.optimizer
        opt_class = type(optimizer)
        defaults = {k: v for k, v in optimizer.defaults.items() if k in ("lr", "momentum", "weight_decay", "nesterov", "betas", "eps")}
        self.grl = None  # the GradientReversal layer whose weight follows our schedule
        self.joint_mmd = None  # JAN's loss, whose coefficient follows our schedule
        models = {"G": backbone, "C": head}
        misc = {}
        sum_weighter = weighters.SumWeighter
        hook_kwargs: dict = {}

        def classifier(post, weights):
            hook_kwargs.update(post=post, weighter=sum_weighter(weights=weights))
            return adapters.Classifier

        if method_name == "source_only":
            adapter_class = classifier([], {})
        elif method_name in ("dann", "cdan", "bsp"):
            half = 0.5 * method.trade_off
            weights = {"src_domain_loss": half, "target_domain_loss": half}
            grl_hook_class = hooks.dann.GradientReversalHook
            if method_name == "bsp":  # DANN plus its BSPHook on the source and target features
                hook_kwargs["post_g"] = [hooks.BSPHook(loss_fn=layers.BatchSpectralLoss(k=method.k))]
                weights["bsp_loss"] = method.bsp_trade_off
            if method_name in ("dann", "bsp"):
                models["D"] = _Negated(method.adversarial.discriminator)
                f_hook = hooks.FeaturesForDomainLossHook()
                domain_loss_hook = None
            else:
                models["D"] = _Negated(method.discriminator)
                misc["feature_combiner"] = _DetachedCondition(method)
                features_hook, combined_hook, _ = hooks.cdan.get_cdan_features_hooks(softmax=True)
                f_hook = hooks.ChainHook(features_hook, combined_hook)
                domain_loss_hook = hooks.cdan.CDANDomainHook(loss_prefix="", detach_features=False, reverse_labels=False, softmax=True)
            grl_hook = grl_hook_class(weight=0.0, apply_to=f_hook.out_keys)
            self.grl = grl_hook.fn
            hook_kwargs.update(f_hook=f_hook, gradient_reversal=grl_hook, weighter=sum_weighter(weights=weights))
            if domain_loss_hook is not None:
                hook_kwargs["domain_loss_hook"] = domain_loss_hook
            adapter_class = adapters.DANN
        elif method_name == "mcc":
            adapter_class = classifier([hooks.MCCHook(loss_fn=layers.MCCLoss(T=method.temperature))], {"mcc_loss": method.trade_off})
        elif method_name == "bnm":
            # its BNMLoss calls torch.linalg.matrix_norm, which refuses bfloat16 under autocast:
            # hand it float32 logits, as our BNM computes in float32
            adapter_class = classifier([hooks.BNMHook(loss_fn=_InFloat32(layers.BNMLoss()))], {"bnm_loss": method.trade_off})
        elif method_name == "entropy_min":
            adapter_class = classifier([hooks.TargetEntropyHook()], {"entropy_loss": method.trade_off})
        elif method_name == "info_max":
            adapter_class = classifier(
                [hooks.TargetEntropyHook(), hooks.TargetDiversityHook()],
                {"entropy_loss": method.trade_off, "diversity_loss": method.trade_off * method.diversity_weight},
            )
        elif method_name == "afn":
            adapter_class = classifier([hooks.AFNHook(loss_fn=layers.AdaptiveFeatureNorm(step_size=method.delta))], {"afn_loss": method.trade_off})
        elif method_name in ("coral", "dan"):
            if method_name == "coral":
                layer, loss_fn = method.layer, layers.CORALLoss()
                weight = method.trade_off
            else:
                layer = "features"
                kernels = method.mmd.kernel
                scales = torch.tensor([kernels.kernel_mul ** -(u - kernels.num_kernels // 2) for u in range(kernels.num_kernels)])
                loss_fn = layers.MMDLoss(kernel_scales=scales, mmd_type="linear" if method.mmd.linear else "quadratic")
                weight = method.trade_off * kernels.num_kernels
            aligner = hooks.AlignerHook(loss_fn, layer=layer)
            # softmax=False: align raw logits, as ours (its default aligns softmax outputs)
            hook_kwargs.update(aligner_hook=aligner, softmax=False, weighter=sum_weighter(weights={f"{layer}_confusion_loss": weight}))
            adapter_class = adapters.Aligner
        elif method_name == "jan":
            from pytorch_adapt.layers import utils as layer_utils
            from pytorch_metric_learning.distances import LpDistance

            self.joint_mmd = _JointMMD(method, layer_utils, LpDistance(normalize_embeddings=False, p=2, power=2))
            # softmax=True: the hook aligns the softmax of the logits, as our JAN
            hook_kwargs.update(aligner_hook=hooks.JointAlignerHook(self.joint_mmd), softmax=True,
                               weighter=sum_weighter(weights={"joint_confusion_loss": 1.0}))
            adapter_class = adapters.Aligner
        else:  # mcd
            models["C"] = _TwoClassifiers(head, method.second_classifier)
            hook_kwargs.update(
                repeat=method.num_generator_steps,
                x_weighter=sum_weighter(),
                y_weighter=sum_weighter(weights={"discrepancy_loss": method.trade_off}),
                z_weighter=sum_weighter(weights={"discrepancy_loss": method.trade_off}),
            )
            adapter_class = adapters.MCD
        self.models = models
        optimizers = containers.Optimizers((opt_class, defaults))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.adapter = adapter_class(
                models=containers.Models(models),
                optimizers=optimizers,
                misc=containers.Misc(misc) if misc else None,
                hook_kwargs=hook_kwargs,
            )
        self.optimizers = list(self.adapter.optimizers.values())
        self.base_lrs = [[g["lr"] for g in opt.param_groups] for opt in self.optimizers]
        self.global_step = 0

    def set_progress(self, progress: float, step: int) -> None:
        """Learning rate (our schedule) and GRL coefficient (our method's schedule) for this step."""
        t = self.trainer
        factor = lr_factor(t.lr_schedule, progress, step, t.lr_gamma, t.lr_decay, t.lr_milestones, t.lr_step_factor,
                           t.steps_per_epoch)
        for opt, bases in zip(self.optimizers, self.base_lrs):
            for group, base in zip(opt.param_groups, bases):
                group["lr"] = base * factor
        method = self.problem.method
        if self.joint_mmd is not None:
            kernels = method.jmmd.kernels[0].num_kernels
            self.joint_mmd.coefficient = method.trade_off * method.schedule(progress) * kernels
        if self.grl is not None:
            coefficient = method.max_coefficient * method.schedule(ramp_input(progress, step, method.ramp_steps))
            self.grl.update_weight(coefficient)

    def batch(self) -> dict:
        source_images, source_labels = self.problem.source_batches.next()
        target_images, _ = self.problem.target_batches.next()
        xs, xt = self.problem.preprocess(source_images), self.problem.preprocess(target_images)
        return {
            "src_imgs": xs,
            "src_labels": source_labels[self.task_name],
            "target_imgs": xt,
            "src_domain": torch.zeros(xs.shape[0], device=xs.device),
            "target_domain": torch.ones(xt.shape[0], device=xt.device),
        }

    def step(self, progress: float) -> dict:
        self.set_progress(progress, self.global_step)
        batch = self.batch()
        with self.trainer._autocast():  # the run's precision setting (bf16 autocast or none), as our step
            losses = self.adapter.training_step(batch)
        self.global_step += 1
        return losses
