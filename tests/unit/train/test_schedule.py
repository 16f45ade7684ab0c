"""The learning-rate curve and the loss schedule: exact values at given steps."""

import math

import pytest
import torch

from liveness.train.schedule import LossSchedule, lr_factor, warmup_cosine_scheduler


class TestLrFactor:
    @pytest.mark.parametrize(("step", "expected"), [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0)])
    def test_linear_warm_up_reaches_the_full_rate_on_its_last_step(self, step, expected):
        assert lr_factor(step, total_steps=20, warmup_steps=4) == pytest.approx(expected)

    def test_cosine_follows_over_the_remaining_steps(self):
        # 4 warm-up steps, then 16 cosine steps: step 4 + 8 is half way down
        assert lr_factor(4, 20, 4) == pytest.approx(1.0)
        assert lr_factor(12, 20, 4) == pytest.approx(0.5)
        assert lr_factor(19, 20, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 16)))

    def test_no_warm_up_is_plain_cosine(self):
        assert lr_factor(0, 10) == 1.0
        assert lr_factor(5, 10) == pytest.approx(0.5)

    def test_floor_is_min_ratio(self):
        assert lr_factor(10, 10, 0, min_ratio=0.1) == pytest.approx(0.1)
        assert lr_factor(5, 10, 0, min_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)

    def test_warm_up_longer_than_the_run_never_passes_the_peak(self):
        assert [lr_factor(s, 3, 10) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])


class TestScheduler:
    def test_each_step_runs_at_its_factor_of_lr(self):
        parameter = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.Adam([parameter], lr=2e-3)
        scheduler = warmup_cosine_scheduler(optimizer, total_steps=20, warmup_steps=4, lr=2e-3, min_lr=2e-4)
        seen = []
        for _ in range(20):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        expected = [2e-3 * lr_factor(s, 20, 4, min_ratio=0.1) for s in range(20)]
        assert seen == pytest.approx(expected)
        assert seen[0] == pytest.approx(5e-4) and seen[3] == pytest.approx(2e-3)

    def test_state_round_trip_resumes_the_curve(self):
        def make():
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            return optimizer, warmup_cosine_scheduler(optimizer, 10, 3, 1.0, 0.0)

        optimizer, scheduler = make()
        for _ in range(5):
            optimizer.step()
            scheduler.step()
        resumed_optimizer, resumed = make()
        resumed_optimizer.load_state_dict(optimizer.state_dict())
        resumed.load_state_dict(scheduler.state_dict())
        resumed_optimizer.step()
        resumed.step()
        assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(lr_factor(6, 10, 3))


class TestLossSchedule:
    def test_adversarial_starts_late_and_runs_every_k_steps(self):
        schedule = LossSchedule(adversarial_start_step=3, d_every=2)
        assert [s for s in range(10) if schedule.adversarial_at(s)] == [3, 5, 7, 9]

    def test_identity_every_k_steps(self):
        schedule = LossSchedule(identity_every=3)
        assert [s for s in range(10) if schedule.identity_at(s)] == [0, 3, 6, 9]

    def test_patent_schedule_runs_everything_every_step(self):
        schedule = LossSchedule()
        assert all(schedule.adversarial_at(s) and schedule.identity_at(s) for s in range(5))

    def test_disabled_terms_never_run(self):
        schedule = LossSchedule(adversarial_enabled=False, identity_enabled=False)
        assert not any(schedule.adversarial_at(s) or schedule.identity_at(s) for s in range(5))
        assert schedule.steps_with(5) == {"pixel": 5, "latent": 5, "adversarial": 0, "identity": 0}

    @pytest.mark.parametrize("total", [0, 1, 3, 4, 11, 12])
    @pytest.mark.parametrize(("start", "d_every", "identity_every"), [(0, 1, 1), (4, 2, 2), (3, 3, 5), (20, 1, 1)])
    def test_counts_match_the_per_step_rule(self, total, start, d_every, identity_every):
        schedule = LossSchedule(start, d_every, identity_every)
        counts = schedule.steps_with(total)
        assert counts["adversarial"] == sum(schedule.adversarial_at(s) for s in range(total))
        assert counts["identity"] == sum(schedule.identity_at(s) for s in range(total))
