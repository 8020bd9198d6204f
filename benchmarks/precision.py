"""Numeric precision and backend settings of a run: autocast, loss scaling, cuDNN and TF32.

``train.amp`` chooses the autocast dtype of the forward pass:

* ``false``: float32.
* ``bf16``: bfloat16 autocast.  On CUDA it needs ``torch.cuda.is_bf16_supported()``
  (an error otherwise); on a CPU it needs native bf16 arithmetic (AVX512-BF16 or
  AMX, as oneDNN reports it), otherwise a warning says so and the run is float32,
  since emulated bf16 is slower than float32.
* ``fp16``: float16 autocast with dynamic loss scaling (:class:`LossScaler`).
* ``true``: the best the device supports: bf16 where it is native, else fp16 on
  CUDA, else float32.

bfloat16 has float32's exponent range, so it needs no loss scaling; float16
does, and its scaler reads one flag on the host every step (as
``torch.amp.GradScaler`` does) to decide whether to skip the step.  Batch
statistics (CORAL, MMD, …) leave autocast and compute in float32 whatever is
chosen here (``adapt/losses/_precision.py``).

Backends, set by :func:`configure_backends` and recorded in every run's record:
``cudnn.benchmark`` on unless ``train.deterministic`` (a run's input shapes are
fixed, so autotuning pays once; determinism forbids it); TF32 off for matmuls
and convolutions, so a float32 run is float32 on every GPU generation (TF32
exists on Ampere and later only) — lower precision is ``train.amp``'s job.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import ConfigError

log = logging.getLogger(__name__)

#: the values train.amp accepts besides true/false
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16 / AMX), as oneDNN reports it."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def cuda_has_bf16(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def parse_amp(value) -> str:
    """``true``/``false``/``"bf16"``/``"fp16"`` (and their spellings as strings) → ``auto``/``off``/``bf16``/``fp16``."""
    if value is True or (isinstance(value, str) and value.lower() in ("true", "auto")):
        return "auto"
    if value is False or value is None or (isinstance(value, str) and value.lower() in ("false", "off", "fp32", "none")):
        return "off"
    if isinstance(value, str) and value.lower() in AMP_DTYPES:
        return value.lower()
    raise ConfigError(f"train.amp is {value!r}; choose one of: false, true (the best the device supports), bf16, fp16")


@dataclass(frozen=True)
class Precision:
    """What a run computes in: the autocast dtype (None: float32) and whether losses are scaled."""

    dtype: torch.dtype | None
    device_type: str
    loss_scaling: bool
    #: why this was chosen (logged, and kept in the record)
    reason: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_amp(value, device: torch.device, *, loss_scaling_refused: str | None = None) -> Precision:
    """The precision a run uses for ``train.amp=value`` on ``device``.

    ``loss_scaling_refused``: why float16 loss scaling would be wrong for this run (a weighting
    that reads the terms' gradients, a method that owns its update), or None.  Then ``fp16`` is
    an error and ``true`` does not pick it.
    """
    setting = parse_amp(value)
    kind = device.type
    fp32 = lambda reason: Precision(None, kind, False, reason)  # noqa: E731
    if setting == "off":
        return fp32("train.amp=false")
    if kind == "cuda":
        if setting in ("bf16", "auto") and cuda_has_bf16(device):
            return Precision(torch.bfloat16, kind, False, "bfloat16 autocast (the GPU supports bf16)")
        if setting == "bf16":
            raise ConfigError(
                "train.amp=bf16 but this GPU does not support bfloat16 (torch.cuda.is_bf16_supported() is False); "
                "use train.amp=fp16 (loss-scaled float16) or true"
            )
        if loss_scaling_refused is None:
            return Precision(torch.float16, kind, True, "float16 autocast with loss scaling (no bf16 on this GPU)")
        if setting == "fp16":
            raise ConfigError(f"train.amp=fp16 needs loss scaling, which {loss_scaling_refused}; use train.amp=false")
        log.warning("train.amp=true: no bf16 on this GPU and %s, so float16 is not used; running in float32", loss_scaling_refused)
        return fp32(f"float32: no bf16 on this GPU and {loss_scaling_refused}")
    if kind == "cpu":
        if setting == "fp16":  # slow on most CPUs, but exercises the GPU's float16 path anywhere
            if loss_scaling_refused is not None:
                raise ConfigError(f"train.amp=fp16 needs loss scaling, which {loss_scaling_refused}; use train.amp=false")
            return Precision(torch.float16, kind, True, "float16 autocast with loss scaling on the CPU (requested)")
        if cpu_has_native_bf16():
            return Precision(torch.bfloat16, kind, False, "bfloat16 autocast (the CPU has native bf16: AVX512-BF16/AMX)")
        log.warning(
            "train.amp=%s: this CPU has no native bfloat16 arithmetic (no AVX512-BF16/AMX: oneDNN reports none); "
            "emulated bf16 is slower than float32, so the run is float32", value,
        )
        return fp32("float32: the CPU has no native bf16")
    log.warning("train.amp=%s: mixed precision is not supported on %s here; running in float32", value, kind)
    return fp32(f"float32: no mixed precision on {kind}")


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` (a device tensor) on the way back."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, scale):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


class LossScaler:
    """Dynamic loss scaling for float16 autocast, on the device (after ``torch.amp.GradScaler``).

    The terms keep their values (the weighting sees the true losses); only the gradient that
    flows from them into the networks is multiplied by the scale, so float16 activations'
    gradients do not underflow.  :meth:`unscale_` divides the gradients of the parameters that
    gradient reached (the problem's, not the weighting's own) and reports an overflow;
    :meth:`update` halves the scale after an overflow and doubles it after
    ``growth_interval`` clean steps.  Exact for every weighting that does not read the terms'
    gradients (``Weighting.reads_term_gradients``).
    """

    def __init__(self, device, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        self.scale = torch.full((1,), init_scale, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros(1, dtype=torch.int32, device=device)
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval

    def scale_terms(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        scale = self.scale.reshape(())
        return {name: _ScaleGradient.apply(value, scale) for name, value in terms.items()}

    def unscale_(self, parameters) -> Tensor:
        """Divide the gradients by the scale in place; return a (1,) float tensor, 1 on inf/NaN."""
        found = torch.zeros(1, dtype=torch.float32, device=self.scale.device)
        inverse = self.scale.double().reciprocal().float()
        groups: dict[tuple, list[Tensor]] = {}
        for p in parameters:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in groups.values():
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, inverse)
        return found

    def update(self, found_inf: Tensor) -> None:
        torch._amp_update_scale_(self.scale, self.growth_tracker, found_inf,
                                 self.growth_factor, self.backoff_factor, self.growth_interval)

    def state_dict(self) -> dict:
        return {"scale": self.scale.detach().cpu().clone(), "growth_tracker": self.growth_tracker.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.scale.copy_(state["scale"].to(self.scale.device))
        self.growth_tracker.copy_(state["growth_tracker"].to(self.growth_tracker.device))


def configure_backends(device: torch.device, deterministic: bool) -> dict:
    """Set cuDNN autotuning and TF32 deliberately (see the module docstring); return what was set."""
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return backend_settings(device)


def backend_settings(device: torch.device) -> dict:
    """The numeric backend settings in force, for the run record."""
    settings = {
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
    }
    if device.type == "cuda":
        settings["cuda_bf16"] = cuda_has_bf16(device)
    return settings
