"""DDP through torchrun on CPU (gloo): 2 ranks at batch b make the same updates as 1 rank at batch 2b."""

import json

import pytest
import torch

from liveness.config import parse_params
from liveness.data.memory import CropArrayDataset, make_smoke_crops
from liveness.train.trainer import Trainer
from tests.fixtures.ddp import CROPS, train_on_two_ranks

RAW_PARAMS = {
    "model": {"profile": "tiny", "image_size": 32},
    "identity": {"backbone": "onet"},
    # train.batch_size is the global batch: 2 ranks x 4 = 1 rank x 8. 24 crops -> 3 steps.
    "train": {"epochs": 1, "batch_size": 8, "num_workers": 0, "log_every_steps": 1, "checkpoint_every_steps": 1000},
}


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_twice_the_batch(tmp_path):
    completed = train_on_two_ranks(RAW_PARAMS, tmp_path, timeout=240)
    assert completed.stderr.count("done: 1 epochs, 3 steps") == 1, "only rank 0 reports"

    single = Trainer(parse_params(RAW_PARAMS), tmp_path / "single")
    single.fit(CropArrayDataset(make_smoke_crops(CROPS, 32, seed=0)))

    ddp_checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    for network, reference in (("generator", single.generator), ("discriminator", single.discriminator)):
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(ddp_checkpoint[network][name], value, rtol=1e-4, atol=1e-5,
                                       msg=f"{network}.{name} differs between 2 ranks and 1 rank")
    # and training really moved the weights, so the comparison is not of two untouched inits
    torch.manual_seed(0)
    from liveness.model.factory import build_generator

    init = build_generator(parse_params(RAW_PARAMS).model.width_profile()).state_dict()
    assert any(not torch.allclose(init[k], v) for k, v in single.generator.state_dict().items())

    # rank 0 alone logged, once per step, with the losses of the whole global batch
    ddp_records = _metrics(tmp_path / "ddp" / "metrics.jsonl")
    single_records = _metrics(tmp_path / "single" / "metrics.jsonl")
    assert sum("params" in r for r in ddp_records) == 1
    assert [r["step"] for r in ddp_records if "loss_g" in r] == [1, 2, 3]
    first_ddp = next(r for r in ddp_records if r.get("step") == 1)
    first_single = next(r for r in single_records if r.get("step") == 1)
    for name in ("loss_d", "loss_g", "loss_pixel", "loss_identity"):
        assert first_ddp[name] == pytest.approx(first_single[name], rel=1e-5)
    assert next(r for r in ddp_records if "params" in r)["params"]["distributed.world_size"] == 2
