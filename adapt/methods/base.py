"""What a domain-adaptation method is, for the training engine.

A method adds *named loss terms* to the source task loss, computed from the
backbone's features and the classifier's logits on a source and a target
batch.  Extra networks (a discriminator, a second classifier) live inside the
method as submodules, so their parameters are trained and checkpointed with
it.  Which weighting combines the terms is not the method's business.

Every subclass that sets :attr:`AdaptationMethod.name` registers itself in
:data:`METHODS` when its module is imported (and :mod:`adapt.methods` imports
all of its modules), so a new method is one new file in ``adapt/methods/``.
"""
from __future__ import annotations

from torch import Tensor, nn

from .._registry import register

#: config name (``method.name``) → method class, filled by the classes themselves
METHODS: dict[str, type["AdaptationMethod"]] = {}


class AdaptationMethod(nn.Module):
    """Base class.  Subclasses override :meth:`alignment_terms`.

    A subclass's docstring starts with one line naming the method and its
    paper (``mtlda list`` shows it), then documents the term names it returns
    and its defaults from the paper.
    """

    #: the name configs use (``method.name``); a class that sets one is registered in :data:`METHODS`
    name: str = ""
    #: constructor arguments that follow from the model, not hyperparameters: ``feature_dim`` (the
    #: backbone's output size), ``num_classes`` (the first task's), ``task_classes`` (task → number of
    #: classes, every classification task), ``head`` (the classifier module, for methods whose extra
    #: classifiers copy its layers).  Whoever builds the method passes them (the harness does); a config
    #: cannot set them
    derived_arguments: tuple[str, ...] = ()
    #: False only for the no-adaptation baseline, which changes neither training nor evaluation (a problem
    #: without a target domain accepts that method alone)
    adapts: bool = True
    #: names of the loss terms this method adds (for configs and logging)
    term_names: tuple[str, ...] = ()
    #: True for methods whose optimisation is not one backward of weighted terms
    #: (MCD's three-step update): they implement :meth:`update` instead
    owns_update: bool = False
    #: False for methods whose training never looks at target data (source-only, AdaBN): the
    #: engine then forwards source batches alone, so batch norm sees no target statistics
    uses_target_in_training: bool = True
    #: True for methods that re-estimate batch-norm statistics on target data before
    #: evaluating on the target (AdaBN; see :func:`adapt.adabn.adapt_batchnorm_statistics`)
    adapts_batchnorm_for_target: bool = False
    #: True for methods that read the classifier's logits (one task's head): CDAN, MCC, entropy, …
    #: They are defined for a single label space, so a multi-task source refuses them; methods
    #: that only read the shared features (``False``) align the representation all heads share.
    #: A method for which this depends on an argument sets it per instance in ``__init__`` and
    #: names in :attr:`features_only_with` the arguments under which it is ``False``.
    reads_logits: bool = True
    #: (argument, value) pairs that make ``reads_logits`` False (Deep CORAL: ``(("layer", "features"),)``)
    features_only_with: tuple[tuple[str, object], ...] = ()
    #: True for methods that read every task's logits (``source_task_logits`` / ``target_task_logits``,
    #: dicts keyed by task) instead of one task's, so a multi-task source with classification tasks
    #: admits them although ``reads_logits`` is True (CDAN per task)
    reads_every_task: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(METHODS, cls)

    def __init__(self) -> None:
        """A method without hyperparameters takes no arguments (a config that gives it some is told so)."""
        super().__init__()

    def alignment_terms(
        self,
        *,
        source_features: Tensor,
        target_features: Tensor,
        source_logits: Tensor,
        target_logits: Tensor,
        progress: float,
    ) -> dict[str, Tensor]:
        """The method's loss terms for one source and one target batch.

        The engine also passes ``step`` (absolute step count) and ``source_task_logits`` /
        ``target_task_logits`` (every task's logits, keyed by task); with several tasks
        ``source_logits`` and ``target_logits`` are None.  Methods take what they read and absorb
        the rest with ``**_``.
        """
        raise NotImplementedError

    def update(
        self,
        *,
        model,
        task,
        source_images: Tensor,
        source_labels: Tensor,
        target_images: Tensor,
        optimizer,
        progress: float,
    ) -> dict[str, Tensor]:
        """One full optimisation step for methods with ``owns_update = True``.

        ``model`` is the :class:`mtl.MultiTaskModel` (one head, named after
        ``task``); ``optimizer`` holds the model's and this method's parameters.
        To keep a parameter group fixed in a sub-step, set its ``.grad`` to
        ``None`` before ``optimizer.step()`` (optimisers skip such parameters,
        so momentum does not move them).  Returns the detached loss terms for
        logging.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define its own update")

    def diagnostics(self) -> dict[str, float]:
        """Scalars worth logging after a step (for example the GRL coefficient)."""
        return {}

    def evaluation_heads(self) -> dict[str, nn.Module]:
        """Classifiers of this method, besides the model's head, that evaluation also scores.

        Each maps the backbone's features to the task's logits (MCD: ``{"f2": second_classifier}``).
        The harness reports them beside the model's own prediction (see
        :func:`benchmarks.problems.extra_heads.extra_head_metrics`); the model's head stays what a
        record's ``accuracy`` measures.  Default: none.
        """
        return {}


class SourceOnly(AdaptationMethod):
    """No adaptation: train on labelled source data only (the lower baseline of every DA table).

    Target images are not even forwarded during training, so batch-norm
    statistics are pure source statistics, as in a model trained without
    knowledge of the target domain.
    """

    name = "source_only"
    adapts = False
    uses_target_in_training = False
    reads_logits = False

    def alignment_terms(self, **_) -> dict[str, Tensor]:
        return {}
