"""Prometheus metrics for one app instance (its own registry, so several apps in one process do not clash)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PHASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PHASES = ("queue", "work", "decode", "detect", "score")
"""Where a scoring request's time goes. ``queue``: waiting for a worker thread; ``work``: the job in its worker
thread (decoding the upload, then ``Predictor.predict``, in the thread's worker process when there are worker
processes: then it includes handing the upload over and the answer back); within predict, ``decode`` (bytes or
array to RGB; near 0 when the server decoded already), ``detect`` (MTCNN, the multi-face policy and the aligned crop) and
``score`` (the network). Request time outside queue and work is HTTP: reading, parsing and answering."""
KNOWN_ROUTES = frozenset({"/v1/liveness", "/v1/liveness/batch", "/healthz", "/readyz", "/metrics", "/docs",
                          "/openapi.json"})


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("liveness_http_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("liveness_http_request_duration_seconds", "Time from request start to the end "
                                 "of the response, by route", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.predictions = Counter("liveness_predictions", "Images answered with a decision, by label",
                                   ["label"], registry=self.registry)
        self.refusals = Counter("liveness_refused_images", "Images refused with a 4xx, by error code",
                                ["error"], registry=self.registry)
        self.reloads = Counter("liveness_model_reloads", "Model load attempts by outcome (success, failure)",
                               ["outcome"], registry=self.registry)
        self.ready = Gauge("liveness_model_ready", "1 once a model is loaded and serving", registry=self.registry)
        self.model = Gauge("liveness_model_info", "The model being served (value 1)", ["name", "version"],
                           registry=self.registry)
        self.inflight = Gauge("liveness_inference_in_flight", "Inference jobs queued or running",
                              registry=self.registry)
        self.loaded_at = Gauge("liveness_model_loaded_timestamp_seconds", "When the served model was loaded",
                               registry=self.registry)
        self.phases = Histogram("liveness_phase_duration_seconds", "Time per phase of scoring requests: queue, "
                                "work (in the worker thread), and within it decode, detect, score", ["phase"],
                                buckets=PHASE_BUCKETS, registry=self.registry)
        for phase in PHASES:
            self.phases.labels(phase)  # every phase is exported from the start, at zero

    def observe_phase(self, phase: str, seconds: float) -> None:
        """Record one phase duration (perf_counter seconds); the Predictor and the worker pool call it."""
        self.phases.labels(phase).observe(seconds)

    def served(self, name: str, version: str, previous: tuple[str, str] | None) -> None:
        if previous is not None:
            try:
                self.model.remove(*previous)
            except KeyError:
                pass
        self.model.labels(name, version).set(1)
        self.ready.set(1)
        self.loaded_at.set(time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (plain ASGI: no per-request task as BaseHTTPMiddleware would add)."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
        status, start = 500, time.perf_counter()

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
