"""Dynamic Weight Average (DWA).

Reference
    Shikun Liu, Edward Johns and Andrew J. Davison. "End-to-End Multi-Task
    Learning with Attention". IEEE/CVF Conference on Computer Vision and
    Pattern Recognition (CVPR), 2019.

Update rule
    With ``L̄_k(n)`` the average loss of term ``k`` over window ``n`` (the paper:
    over epoch ``n``) and ``K`` terms, the weights used during window ``n`` are::

        r_k(n−1) = L̄_k(n−1) / L̄_k(n−2)
        w_k(n)   = K · exp(r_k(n−1) / T) / Σ_i exp(r_i(n−1) / T)

    and ``w_k = 1`` for the first two windows (no ratio exists yet).  A term
    whose loss falls more slowly than the others gets a larger weight; ``T``
    (paper: 2) softens the weights; the weights always sum to ``K``.  The
    combined objective is ``Σ_k w_k L_k`` with the ``w_k`` constant within a
    window.

Windows instead of epochs
    The engine calls :meth:`update` once per optimiser step and never tells a
    weighting where an epoch ends, so the per-epoch averages of the paper are
    formed over windows of ``window`` consecutive :meth:`update` calls
    (default 100; an epoch is typically hundreds of steps).  Set ``window`` to the number of steps per epoch to reproduce the
    paper exactly, or set ``window=None`` and call :meth:`epoch_end` at the
    end of every epoch; :meth:`epoch_end` also closes a partial window when
    ``window`` is set.  The average is the plain mean of the per-step loss
    values passed to :meth:`update` (the losses of the step, computed before
    the optimiser step), as the paper's averaged training loss.

State
    Term names, the running sum and count of the open window and the last two
    window averages are kept as float64 CPU tensors and saved with
    ``state_dict()`` (``get_extra_state``), so a resumed run continues with
    exactly the same weights.  ``reset()`` forgets every window.
"""
from __future__ import annotations

import torch

from .base import LossWeighting, check_terms

_CPU = torch.device("cpu")
_F64 = torch.float64


class DWA(LossWeighting):
    """Dynamic weight average: softmax of loss-descent ratios over windows (Liu et al. 2019).

    Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    Args:
        temperature: ``T`` of the softmax over loss-descent ratios (paper: 2).
        window: number of :meth:`update` calls averaged into one "epoch" loss;
            ``None``: windows end only at :meth:`epoch_end`.
    """

    name = "dwa"

    def __init__(self, temperature: float = 2.0, window: int | None = 100):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"DWA: temperature must be positive, got {temperature}")
        if window is not None and int(window) < 1:
            raise ValueError(f"DWA: window must be a positive number of steps or None, got {window}")
        self.temperature = float(temperature)
        self.window = None if window is None else int(window)
        self.reset()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, window={self.window}"

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.names: list[str] | None = None
        self._sum: torch.Tensor | None = None  # running sum of the open window
        self._count = 0  # updates in the open window
        self._means: list[torch.Tensor] = []  # last two closed window averages, oldest first
        self.windows_closed = 0

    def get_extra_state(self) -> dict:
        return {
            "names": None if self.names is None else list(self.names),
            "sum": self._sum,
            "count": self._count,
            "means": list(self._means),
            "windows_closed": self.windows_closed,
        }

    def set_extra_state(self, state: dict) -> None:
        self.names = None if state["names"] is None else list(state["names"])
        self._sum = None if state["sum"] is None else state["sum"].to(_CPU, _F64)
        self._count = int(state["count"])
        self._means = [m.to(_CPU, _F64) for m in state["means"]]
        self.windows_closed = int(state["windows_closed"])

    # ------------------------------------------------------------------ rule
    def _ordered(self, losses) -> list[str]:
        names = check_terms(losses, "DWA")
        if self.names is None:
            self.names = names
            self._sum = torch.zeros(len(names), dtype=_F64)
        elif set(names) != set(self.names):
            raise ValueError(f"DWA: loss terms {sorted(names)} differ from the terms seen before {sorted(self.names)}")
        return self.names

    def current_weights(self) -> torch.Tensor:
        """The weights (float64, CPU, in term order) used until the open window closes."""
        k = len(self.names) if self.names is not None else 0
        if len(self._means) < 2:
            return torch.ones(k, dtype=_F64)
        older, newer = self._means
        ratio = torch.where(older > 0, newer / torch.where(older > 0, older, 1.0), torch.ones_like(newer))
        return k * torch.softmax(ratio / self.temperature, dim=0)

    def combine(self, losses):
        names = self._ordered(losses)
        weights = self.current_weights()
        values = torch.stack([losses[n] for n in names])
        total = (weights.to(device=values.device, dtype=values.dtype) * values).sum()
        return total, {n: float(w) for n, w in zip(names, weights.tolist())}

    def update(self, losses) -> None:
        names = self._ordered(losses)
        values = torch.stack([losses[n].detach() for n in names]).cpu().to(_F64)
        self._sum = self._sum + values
        self._count += 1
        if self.window is not None and self._count >= self.window:
            self._close_window()

    def epoch_end(self) -> None:
        """Close the open window (an epoch boundary); a no-op when it holds no step."""
        if self._count > 0:
            self._close_window()

    def _close_window(self) -> None:
        self._means = [*self._means, self._sum / self._count][-2:]
        self._sum = torch.zeros_like(self._sum)
        self._count = 0
        self.windows_closed += 1
