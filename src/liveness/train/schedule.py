"""When each part of training acts: the learning-rate curve and the loss schedule, pure functions of the step.

Steps are counted from 0: step ``s`` is the (s+1)-th optimisation step. Because nothing here holds state, a
resumed run follows the same curve and the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """The multiple of ``train.lr`` used at ``step``: linear warm-up, then cosine annealing to ``min_ratio``.

    Warm-up rises as (s+1)/warmup_steps, so the first step runs at lr/warmup_steps and step warmup_steps-1 at
    the full lr. Cosine annealing then covers the remaining ``total_steps - warmup_steps`` steps.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                            lr: float, min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following ``lr_factor``; step it once after every optimisation step."""
    min_ratio = min(min_lr / lr, 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, min_ratio))


@dataclass(frozen=True)
class LossSchedule:
    """Which optional terms a step computes (claim 8's four losses; L_pix and L_lat run on every step).

    ``adversarial``: D's step and G's adversarial term, from ``adversarial_start_step`` on, every ``d_every``-th
    step. ``identity``: L_id every ``identity_every``-th step. A term whose weight is 0, or whose network is
    absent (no f), never runs.
    """

    adversarial_start_step: int = 0
    d_every: int = 1
    identity_every: int = 1
    adversarial_enabled: bool = True
    identity_enabled: bool = True

    def adversarial_at(self, step: int) -> bool:
        return (self.adversarial_enabled and step >= self.adversarial_start_step
                and (step - self.adversarial_start_step) % self.d_every == 0)

    def identity_at(self, step: int) -> bool:
        return self.identity_enabled and step % self.identity_every == 0

    def steps_with(self, total_steps: int) -> dict[str, int]:
        """How many of steps 0..total_steps-1 compute each term."""
        adversarial = 0
        if self.adversarial_enabled and total_steps > self.adversarial_start_step:
            adversarial = (total_steps - self.adversarial_start_step - 1) // self.d_every + 1
        identity = (total_steps - 1) // self.identity_every + 1 if self.identity_enabled and total_steps else 0
        return {"pixel": total_steps, "latent": total_steps, "adversarial": adversarial, "identity": identity}
