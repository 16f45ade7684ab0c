"""One training iteration: a D step, then a G step with the four losses of claim 8 (D and L_id schedulable)."""

from __future__ import annotations

import torch
from torch import nn

from liveness.model.identity import IdentityNetwork
from liveness.model.losses import (
    LossWeights,
    discriminator_loss,
    generator_adversarial_loss,
    identity_loss,
    latent_consistency_loss,
    pixel_loss,
    weighted_generator_loss,
)
from liveness.runtime import Runtime


class TrainingStep:
    """Alternating GAN update. D changes only in its own step; f never changes.

    ``generator`` and ``discriminator`` may be DDP- or compile-wrapped (gradients sync there).
    ``discriminator_core`` is the bare D used inside the G step with its parameters frozen, so the G loss
    reaches I_real through D without touching D's weights or its DDP hooks.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        discriminator_core: nn.Module,
        identity: IdentityNetwork | None,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        weights: LossWeights,
        runtime: Runtime,
        latent_mode: str = "patent",
    ) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.discriminator_core = discriminator_core
        self.identity = identity
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.weights = weights
        self.runtime = runtime
        self.latent_mode = latent_mode

    def __call__(self, images: torch.Tensor, adversarial: bool = True, identity: bool = True) -> dict[str, torch.Tensor]:
        """Run one iteration on images in [-1, 1]; returns the detached losses of the terms it computed.

        ``adversarial=False`` skips D's step and G's adversarial term (D is not even run); ``identity=False``
        skips L_id and f. The trainer's ``LossSchedule`` decides both per step; L_pix and L_lat always run.
        """
        use_identity = identity and self.identity is not None
        with self.runtime.autocast():
            output = self.generator(images, with_clear_face=use_identity)

        losses: dict[str, torch.Tensor] = {}
        if adversarial:
            # D step: I is real, I_real is fake; G's graph is not touched.
            self.optimizer_d.zero_grad(set_to_none=True)
            with self.runtime.autocast():
                logits = self.discriminator(torch.cat([images, output.reconstruction.detach()]))
            logits_real, logits_fake = logits.chunk(2)
            loss_d = discriminator_loss(logits_real, logits_fake)
            loss_d.backward()
            self.optimizer_d.step()
            losses["loss_d"] = loss_d

        # G step, through the updated D with D frozen.
        self.optimizer_g.zero_grad(set_to_none=True)
        self.discriminator_core.requires_grad_(False)
        try:
            with self.runtime.autocast():
                terms = {
                    "pixel": pixel_loss(images, output.reconstruction.float()),
                    "latent": latent_consistency_loss(output.codes, output.recodes, self.latent_mode),
                }
                if adversarial:
                    terms["adversarial"] = generator_adversarial_loss(self.discriminator_core(output.reconstruction))
                if use_identity:
                    with torch.no_grad():
                        embedding_image = self.identity(images)
                    terms["identity"] = identity_loss(embedding_image, self.identity(output.clear_face))
            loss_g = weighted_generator_loss(terms, self.weights)
            loss_g.backward()
            self.optimizer_g.step()
        finally:
            self.discriminator_core.requires_grad_(True)

        losses["loss_g"] = loss_g
        losses.update({f"loss_{name}": value for name, value in terms.items()})
        return {name: value.detach() for name, value in losses.items()}
