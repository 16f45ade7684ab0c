import io

import pytest
import torch
from rich.console import Console

from liveness.train.progress import TrainingProgress
from liveness.runtime import images_to_model_input, resolve_runtime


class TestRuntime:
    def test_auto_on_a_machine_without_cuda_is_cpu_fp32(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        runtime = resolve_runtime("auto", "auto")
        assert runtime.device.type == "cpu" and runtime.precision == "fp32" and not runtime.channels_last

    def test_auto_precision_on_cuda_is_bf16_channels_last(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        runtime = resolve_runtime("auto", "auto", local_rank=1)
        assert runtime.device == torch.device("cuda", 1) and runtime.precision == "bf16"
        assert runtime.memory_format == torch.channels_last

    def test_cuda_requested_without_cuda_is_a_clear_error(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(RuntimeError, match="train.device: auto or cpu"):
            resolve_runtime("cuda")

    def test_bf16_autocast_on_cpu_when_asked(self):
        runtime = resolve_runtime("cpu", "bf16")
        with runtime.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16

    def test_uint8_crops_become_minus_one_to_one_nchw(self):
        batch = torch.tensor([[[[0, 255, 127]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
        images = images_to_model_input(batch, resolve_runtime("cpu"))
        assert images.shape == (1, 3, 1, 1)
        assert images.flatten().tolist() == pytest.approx([-1.0, 1.0, 127 / 127.5 - 1])


class TestProgress:
    def test_shows_losses_and_images_per_second(self):
        stream = io.StringIO()
        console = Console(file=stream, width=200, force_terminal=True)
        with TrainingProgress(10, 0, enabled=True, console=console) as bar:
            bar.update(3, 1, {"loss_g": 1.5, "loss_d": 0.7}, 123.4)
        text = stream.getvalue()
        assert "g=1.5" in text and "d=0.7" in text and "123.4 img/s" in text and "3/10" in text

    def test_disabled_prints_nothing(self, capsys):
        with TrainingProgress(10, 0, enabled=False) as bar:
            bar.update(3, 1, {"loss_g": 1.5}, 1.0)
        assert capsys.readouterr() == ("", "")
