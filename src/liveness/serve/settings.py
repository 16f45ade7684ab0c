"""What a server is allowed to accept and how it finds its model; validated once, at start."""

from __future__ import annotations

from dataclasses import dataclass

from liveness.data.decode import DEFAULT_MAX_PIXELS

DEFAULT_MODEL = "models:/liveness@champion"
DEFAULT_HOST = "127.0.0.1"  # loopback: the service has no authentication, so exposing it is a deliberate choice
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH = 16
DEFAULT_TIMEOUT_S = 30.0
BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class ServeSettings:
    model: str = DEFAULT_MODEL
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the project's SQLite store
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_bytes: int = DEFAULT_MAX_BYTES  # per image (a batch body may hold max_batch of them)
    max_pixels: int = DEFAULT_MAX_PIXELS  # width x height from the header, checked before decoding
    max_batch: int = DEFAULT_MAX_BATCH
    timeout_s: float = DEFAULT_TIMEOUT_S  # reading the body, and separately queueing + decoding + inference
    poll_s: float = 0.0  # seconds between checks of the model's alias; 0 = only on SIGHUP
    worker_threads: int = 2
    backend: str = "torch"

    def __post_init__(self) -> None:
        positive = {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels, "max_batch": self.max_batch,
                    "timeout_s": self.timeout_s, "worker_threads": self.worker_threads}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.poll_s < 0:
            raise ValueError(f"poll_s must be 0 (off) or positive, got {self.poll_s}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0-65535")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}")

    @property
    def multipart_overhead(self) -> int:
        """Room for multipart boundaries and part headers on top of the image bytes."""
        return 64 * 1024

    def body_limit(self, images: int) -> int:
        return self.max_bytes * images + self.multipart_overhead
