"""An exponential moving average of the generator's weights: the weights that ship when ``train.ema_decay`` > 0.

Averaging over the last few hundred steps removes the step-to-step jitter that an adversarial term and a high
learning rate leave in G's weights. The averaged copy is a whole module, so it scores and saves like G itself.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """Keeps ``module`` = EMA of ``source``'s parameters (buffers are copied, G holds none that learn).

    After ``n`` updates the effective decay is ``min(decay, (1 + n) / (10 + n))``, so the first updates follow
    the quickly moving weights instead of averaging in the random init; short runs benefit the most.
    """

    def __init__(self, source: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie in (0, 1) to average weights, got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(source).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """Move the average towards ``source``'s current weights (call after each G step)."""
        weight = 1.0 - self.current_decay()
        for averaged, current in zip(self.module.parameters(), source.parameters(), strict=True):
            averaged.lerp_(current.detach(), weight)
        for averaged, current in zip(self.module.buffers(), source.buffers(), strict=True):
            averaged.copy_(current)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])
