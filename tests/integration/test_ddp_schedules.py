"""DDP with the loss schedules and EMA on (gloo, CPU): steps without L_id leave the clear-face head unused, which
DDP must allow, and 2 ranks at batch b still match 1 rank at batch 2b."""

import json

import pytest
import torch

from liveness.config import parse_params
from liveness.data.memory import CropArrayDataset, make_smoke_crops
from liveness.train.trainer import Trainer
from tests.fixtures.ddp import train_on_two_ranks

RAW_PARAMS = {
    "model": {"profile": "tiny", "image_size": 32},
    "identity": {"backbone": "onet"},
    # 24 crops, global batch 8 -> 3 steps (0..2): D on step 1 only, L_id on steps 0 and 2. (Longer runs drift apart
    # by float rounding that Adam amplifies where gradients are near zero, so the comparison stays this short.)
    "train": {"epochs": 1, "batch_size": 8, "num_workers": 0, "log_every_steps": 1, "checkpoint_every_steps": 1000,
              "warmup_steps": 2, "adversarial_start_step": 1, "d_every": 2, "identity_every": 2, "ema_decay": 0.9},
}
CROPS = 24


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_schedules_and_average(tmp_path):
    train_on_two_ranks(RAW_PARAMS, tmp_path, CROPS)

    single = Trainer(parse_params(RAW_PARAMS), tmp_path / "single")
    single.fit(CropArrayDataset(make_smoke_crops(CROPS, 32, seed=0)))

    checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    references = {"generator": single.generator.state_dict(), "discriminator": single.discriminator.state_dict()}
    for network, reference in references.items():
        for name, value in reference.items():
            torch.testing.assert_close(checkpoint[network][name], value, rtol=1e-4, atol=1e-5,
                                       msg=f"{network}.{name} differs between 2 ranks and 1 rank")
    assert checkpoint["ema"]["updates"] == 3
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "loss_g" in row]
    assert [row["step"] for row in steps if "loss_d" in row] == [2]
    assert [row["step"] for row in steps if "loss_identity" in row] == [1, 3]
    shipped = torch.load(tmp_path / "ddp" / "generator.pt", weights_only=True)
    for name, value in single.ema.module.state_dict().items():
        torch.testing.assert_close(shipped[name], value, rtol=1e-4, atol=1e-5, msg=f"EMA {name} differs")
