"""The discriminator D (claim 8's adversarial term).

Patent: 6 conv 3x3 alternating with ReLU, then FC and softmax over real/fake. An FC over a full-resolution
map is impractical, so (DESIGN §1.1 deviation) convs 2, 4 and 6 have stride 2 and a global average pool
feeds the FC. ``forward`` returns the two logits; softmax is applied inside the cross-entropy loss, which is
the numerically stable form of log D.
"""

from __future__ import annotations

import torch
from torch import nn

from liveness.model.profiles import WidthProfile

FAKE, REAL = 0, 1  # class indices of D's two-way softmax


class Discriminator(nn.Module):
    def __init__(self, profile: WidthProfile, image_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = image_channels
        for index, width in enumerate(profile.discriminator):
            stride = 2 if index % 2 else 1
            layers += [nn.Conv2d(channels, width, kernel_size=3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Real/fake logits, (N, 2)."""
        return self.classifier(self.pool(self.body(image)).flatten(1))

    def probability_real(self, image: torch.Tensor) -> torch.Tensor:
        """D(I): the softmax probability that ``image`` is a real live image, (N,)."""
        return torch.softmax(self.forward(image), dim=1)[:, REAL]
