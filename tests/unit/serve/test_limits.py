"""The server around the model, with a stand-in predictor: byte and pixel limits, timeouts, readiness, the command."""

from __future__ import annotations

import gzip
import threading
import time
import zlib

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from liveness.data.decode import DEFAULT_MAX_PIXELS
from liveness.serve import work as work_module
from liveness.serve import model as model_module
from liveness.serve.app import create_app
from liveness.serve.model import predictor_factory
from liveness.serve.settings import ServeSettings
from tests.fixtures.bad_images import astronaut, handmade_png
from tests.fixtures.serving import FakePredictor, FakeSource, jpeg, started


def fake_app(delay: float = 0.0, **settings):
    return started(create_app(ServeSettings(model="fake", **settings), source=FakeSource(),
                              factory=lambda folder: FakePredictor(delay)))


class TestLimits:
    def test_declared_oversize_body_is_413(self):
        with fake_app(max_bytes=1000) as client:
            answer = client.post("/v1/liveness", content=b"\xff" * 2000)
            assert (answer.status_code, answer.json()["error"]) == (413, "payload_too_large")
            assert client.post("/v1/liveness", content=jpeg(astronaut()[:16, :16])).status_code == 200

    def test_streamed_oversize_body_without_length_is_413(self):
        def chunks():
            for _ in range(100):
                yield b"\x00" * 10_000

        with fake_app(max_bytes=1000) as client:
            answer = client.post("/v1/liveness", content=chunks())
            assert (answer.status_code, answer.json()["error"]) == (413, "payload_too_large")

    @pytest.mark.parametrize("encoding,compress", [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # HTTP's deflate: zlib-wrapped
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # the raw deflate stream many clients send
        ("gzip, identity", gzip.compress),
    ], ids=["gzip", "x-gzip", "deflate_zlib", "deflate_raw", "gzip_identity"])
    def test_a_compressed_body_is_inflated_and_scored(self, encoding, compress):
        face = jpeg(astronaut()[:16, :16])
        with fake_app() as client:
            answer = client.post("/v1/liveness", content=compress(face),
                                 headers={"content-type": "image/jpeg", "content-encoding": encoding})
            assert answer.status_code == 200, answer.text
            assert answer.json() == client.post("/v1/liveness", content=face).json() | {
                "latency_ms": answer.json()["latency_ms"]}

    def test_a_small_gzip_bomb_is_413_once_inflated(self):
        bomb = gzip.compress(b"\x00" * 50_000)  # about 100 bytes on the wire
        with fake_app(max_bytes=1000) as client:
            answer = client.post("/v1/liveness", content=bomb, headers={"content-encoding": "gzip"})
            assert (answer.status_code, answer.json()["error"]) == (413, "payload_too_large")
            assert len(bomb) < 1000

    def test_an_unknown_or_false_content_encoding_is_a_clear_4xx(self):
        face = jpeg(astronaut()[:16, :16])
        with fake_app() as client:
            answer = client.post("/v1/liveness", content=face, headers={"content-encoding": "br"})
            assert (answer.status_code, answer.json()["error"]) == (415, "unsupported_content_encoding")
            assert "br" in answer.json()["detail"]
            answer = client.post("/v1/liveness", content=face, headers={"content-encoding": "gzip"})
            assert (answer.status_code, answer.json()["error"]) == (400, "bad_content_encoding")
            cut = gzip.compress(face)[:-20]
            answer = client.post("/v1/liveness", content=cut, headers={"content-encoding": "gzip"})
            assert (answer.status_code, answer.json()["error"]) == (400, "bad_content_encoding")
            identity = client.post("/v1/liveness", content=face, headers={"content-encoding": "identity"})
            assert identity.status_code == 200

    def test_pixels_are_refused_from_the_header_before_decoding(self, monkeypatch):
        decoded = []
        real = work_module.decode_image
        monkeypatch.setattr(work_module, "decode_image", lambda data, *a, **k: decoded.append(1) or real(data, *a, **k))
        with fake_app(max_pixels=100 * 100) as client:
            big = client.post("/v1/liveness", content=jpeg(astronaut()))  # 512x512 > 100x100
            assert (big.status_code, big.json()["error"]) == (413, "too_large") and "512x512" in big.json()["detail"]
            bomb = client.post("/v1/liveness", content=handmade_png(100_000, 100_000))  # 1e10 px, a few bytes
            assert (bomb.status_code, bomb.json()["error"]) == (413, "too_large")
            assert decoded == []
            assert client.post("/v1/liveness", content=jpeg(astronaut()[:64, :64])).status_code == 200
            assert decoded == [1]

    def test_default_pixel_limit_is_the_decoders(self):
        assert ServeSettings().max_pixels == DEFAULT_MAX_PIXELS

    def test_inference_timeout_is_503_and_the_loop_keeps_answering(self):
        with fake_app(delay=2.0, timeout_s=0.3, worker_threads=1) as client:
            begin = time.monotonic()
            answer = client.post("/v1/liveness", content=jpeg(astronaut()[:32, :32]))
            assert (answer.status_code, answer.json()["error"]) == (503, "timeout")
            assert time.monotonic() - begin < 1.5
            assert client.get("/healthz").status_code == 200 and time.monotonic() - begin < 1.5

    def test_not_ready_until_the_model_is_loaded(self):
        release = threading.Event()

        def slow_factory(folder):
            release.wait(30)
            return FakePredictor()

        app = create_app(ServeSettings(model="fake"), source=FakeSource(), factory=slow_factory)
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert (ready.status_code, ready.json()["error"]) == (503, "not_ready")
            assert client.post("/v1/liveness", content=b"x").status_code == 503
            release.set()
            assert app.state.holder.wait_ready(10)
            assert client.get("/readyz").json()["model"]["version"] == "1"


class TestCommand:
    def test_serve_binds_loopback_by_default_and_passes_limits(self, monkeypatch, bundle):
        import uvicorn

        from liveness.cli import app as cli

        calls = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
        result = CliRunner().invoke(cli, ["serve", "--model", str(bundle), "--max-bytes", "5000", "--max-pixels",
                                          "7000", "--timeout-s", "2", "--poll-s", "0", "--workers-threads", "3"])
        assert result.exit_code == 0, result.output
        (served, kwargs), = calls
        assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000 and ServeSettings().host == "127.0.0.1"
        settings = served.state.settings
        assert (settings.max_bytes, settings.max_pixels, settings.timeout_s, settings.poll_s, settings.worker_threads) == (5000, 7000, 2.0, 0.0, 3)

    def test_serve_refuses_a_missing_folder(self, tmp_path):
        from liveness.cli import app as cli

        result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "absent")])
        assert result.exit_code == 2 and "neither a models:/ URI nor a folder" in result.output


def test_backend_reaches_the_predictor_only_when_not_torch(monkeypatch):
    """Older Predictors take no backend argument: torch must not pass one, onnx must, or say it cannot."""

    seen = []

    class Current:
        def __init__(self, folder, backend="torch"):
            seen.append((folder, backend))

    class Older:
        def __init__(self, folder):
            seen.append((folder, None))

    monkeypatch.setattr(model_module, "Predictor", Current)
    predictor_factory("torch")("a")
    predictor_factory("onnx")("b")
    assert seen == [("a", "torch"), ("b", "onnx")]
    monkeypatch.setattr(model_module, "Predictor", Older)
    predictor_factory("torch")("c")
    assert seen[-1] == ("c", None)
    with pytest.raises(ValueError, match="no backend option"):
        predictor_factory("onnx")
