"""Find the places where this project's code reads a tensor's value on the host.

On a GPU, ``float(t)``, ``t.item()``, ``bool(t)``, ``t.tolist()``, ``t.cpu()`` and the
like make the host wait until the device has computed ``t`` — a synchronisation.  CUDA
can report them (``torch.cuda.set_sync_debug_mode``), a CPU cannot, so
:class:`HostReadCounter` finds them wherever the code runs: a ``TorchFunctionMode``
that records each such call made *by a file of this repository* (``adapt/``, ``mtl/``,
``benchmarks/``), with its file, line and function.  Reads inside PyTorch itself (an
optimiser reading its CPU step counter, say) are PyTorch's business and not counted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

#: Tensor methods whose result lives on the host
READS = frozenset({"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__format__"})
_ROOT = Path(__file__).resolve().parent.parent
_OURS = tuple(str(_ROOT / d) for d in ("adapt", "mtl", "benchmarks"))
_TORCH = Path(torch.__file__).resolve().parent
#: the dispatch machinery between a Tensor method and this mode (not the caller)
_DISPATCH = (str(_TORCH / "overrides.py"), str(_TORCH / "_tensor.py"))


def _moves_to_cpu(args, kwargs) -> bool:
    try:
        device = torch._C._nn._parse_to(*args[1:], **(kwargs or {}))[0]
    except (TypeError, RuntimeError):
        return False
    return device is not None and device.type == "cpu"


class HostReadCounter(TorchFunctionMode):
    """Records ``"file:line in function: method"`` for every host read made by this project's code while active."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name == "to" and _moves_to_cpu(args, kwargs)):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename in _DISPATCH:
                frame = frame.f_back  # the code that called the Tensor method
            if frame is not None and frame.f_code.co_filename.startswith(_OURS) and frame.f_code.co_filename != __file__:
                where = Path(frame.f_code.co_filename).relative_to(_ROOT)
                self.reads.append(f"{where}:{frame.f_lineno} in {frame.f_code.co_name}: {name}")
        return func(*args, **(kwargs or {}))
