"""Joint Adaptation Network (JAN)."""
from __future__ import annotations

from ..losses._precision import at_least_float32
from ..losses.mmd import JointMultipleKernelMMD, MultiGaussianKernel
from ..schedules import SCHEDULES
from .base import AdaptationMethod


class JAN(AdaptationMethod):
    """JAN: joint MMD of features and predictions (Long et al. 2017).

    Long, Zhu, Wang & Jordan, "Deep Transfer Learning with Joint Adaptation
    Networks", ICML 2017.

    Adds the term ``jmmd``: ``trade_off · schedule(p) · JMMD²`` between the
    source and target joint distributions of (backbone features, softmax
    predictions), under the product of a multi-Gaussian kernel on the features
    and a single Gaussian kernel on the predictions.  The predictions are not
    detached: JAN aligns through the classifier too.  No extra networks (the
    adversarial variant JAN-A is not implemented).

    Paper defaults: features use 5 kernels with multiplier 2 around the batch's
    mean squared distance; predictions one kernel of fixed bandwidth 1.68; λ
    ramped 0 → 1 by the DANN schedule 2/(1+exp(−10p)) − 1.  As for DAN,
    ``linear=False`` uses the unbiased quadratic estimate (the authors'
    library default); ``linear=True`` the paper's linear-time one.
    Transfer-Learning-Library's ``jan.py`` (quadratic, as here) keeps λ = 1
    without a ramp (``schedule="constant"``) and gives the prediction kernel
    σ = 0.92, i.e. ``prediction_bandwidth=1.6928`` (= 2σ² in this convention).
    """

    name = "jan"
    term_names = ("jmmd",)

    def __init__(
        self,
        trade_off: float = 1.0,
        schedule: str = "dann",
        num_kernels: int = 5,
        kernel_mul: float = 2.0,
        prediction_bandwidth: float = 1.68,
        linear: bool = False,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
        self.trade_off = float(trade_off)
        self.schedule = SCHEDULES[schedule]
        kernels = (MultiGaussianKernel(num_kernels, kernel_mul), MultiGaussianKernel(1, bandwidth=prediction_bandwidth))
        self.jmmd = JointMultipleKernelMMD(kernels, linear=linear)

    def alignment_terms(self, *, source_features, target_features, source_logits, target_logits, progress, **_):
        # float32: Gaussian kernels of squared distances underflow/round badly in bfloat16
        source = (at_least_float32(source_features), at_least_float32(source_logits).softmax(dim=1))
        target = (at_least_float32(target_features), at_least_float32(target_logits).softmax(dim=1))
        return {"jmmd": self.trade_off * self.schedule(progress) * self.jmmd(source, target)}
