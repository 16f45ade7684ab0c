"""What a server is allowed to accept and how it finds its model; validated once, at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from liveness.bundle.predictor import BACKENDS
from liveness.config import DEFAULT_MAX_PIXELS
from liveness.registry.resolve import DEFAULT_MODEL

DEFAULT_HOST = "127.0.0.1"  # loopback: another interface needs an API key (or --insecure), see serve/auth.py
DEFAULT_PORT = 8000
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH = 16
DEFAULT_TIMEOUT_S = 30.0
MAX_KEY_CHARS = 4096
WORKER_KINDS = ("process", "thread")


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a bearer key, or None. Never quotes the key: the answer may end up in a log."""
    if not key:
        return "the API key is empty"
    if len(key) > MAX_KEY_CHARS:
        return f"the API key is longer than {MAX_KEY_CHARS} characters; is it the right file?"
    # Bearer credentials travel in an HTTP header: printable ASCII without spaces needs no encoding rules.
    if not all("!" <= char <= "~" for char in key):
        return ("the API key must be one line of printable ASCII without spaces "
                "(make one with `openssl rand -hex 32`)")
    return None


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
    poll_s: float = 30.0  # seconds between checks of the model's alias (a reload when it moved); 0 = only on SIGHUP
    worker_threads: int = 2
    # "process": each worker thread hands its images to a process of its own (serve/processes.py); "thread":
    # decoding and scoring run in the worker threads themselves, in the server process.
    worker_kind: str = "process"
    backend: str = "torch"
    # None: no key asked for. repr=False so that printing or logging the settings never shows the key.
    api_key: str | None = field(default=None, repr=False)

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
        if self.worker_kind not in WORKER_KINDS:
            raise ValueError(f"worker_kind {self.worker_kind!r} is not one of {WORKER_KINDS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}")
        if self.api_key is not None and (problem := api_key_problem(self.api_key)):
            raise ValueError(problem)

    @property
    def multipart_overhead(self) -> int:
        """Room for multipart boundaries and part headers on top of the image bytes."""
        return 64 * 1024

    def body_limit(self, images: int) -> int:
        return self.max_bytes * images + self.multipart_overhead
