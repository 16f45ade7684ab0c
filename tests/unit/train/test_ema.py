"""The moving average of G's weights: its arithmetic, its ramp, and its state."""

import pytest
import torch
from torch import nn

from liveness.train.ema import WeightAverage


def _linear(value: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)
    return layer


class TestWeightAverage:
    def test_starts_as_a_copy_that_does_not_share_storage(self):
        source = _linear(1.0)
        average = WeightAverage(source, 0.9)
        with torch.no_grad():
            source.weight.fill_(5.0)
        assert torch.equal(average.module.weight, torch.ones(1, 2))
        assert not any(p.requires_grad for p in average.module.parameters())

    def test_update_uses_the_ramped_decay(self):
        source = _linear(0.0)
        average = WeightAverage(source, 0.99)
        with torch.no_grad():
            source.weight.fill_(10.0)
        assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
        average.update(source)
        assert average.module.weight[0, 0].item() == pytest.approx(9.0)  # 0.1 * 0 + 0.9 * 10
        assert average.current_decay() == pytest.approx(2 / 11)

    def test_decay_is_capped_at_the_configured_value(self):
        average = WeightAverage(_linear(0.0), 0.5)
        average.updates = 1000
        assert average.current_decay() == 0.5

    def test_state_round_trip(self):
        source = _linear(0.0)
        average = WeightAverage(source, 0.9)
        with torch.no_grad():
            source.weight.fill_(3.0)
        average.update(source)
        copy = WeightAverage(_linear(7.0), 0.9)
        copy.load_state_dict(average.state_dict())
        assert copy.updates == 1
        assert torch.equal(copy.module.weight, average.module.weight)

    @pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
    def test_decay_out_of_range_is_refused(self, decay):
        with pytest.raises(ValueError, match="ema_decay"):
            WeightAverage(_linear(0.0), decay)
