"""A worker-process job for the tests: the real one, except that an upload named ``crash.jpg`` kills the process
(as a decoder crash on a hostile file would). Module-level, so the spawned worker processes can import it."""

from __future__ import annotations

import os

from liveness.serve.processes import _decode_and_predict

CRASH_NAME = "crash.jpg"


def decode_and_predict_or_die(key, images, max_pixels, threads):
    if any(image.filename == CRASH_NAME for image in images):
        os._exit(3)
    return _decode_and_predict(key, images, max_pixels, threads)
