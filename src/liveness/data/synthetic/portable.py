"""Numerics whose results do not depend on the processor, so the demo data is the same bytes on every machine.

Two kinds of code round differently from one CPU to the next. OpenCV picks AVX2 or AVX-512 kernels and Intel
IPP at run time. NumPy picks SIMD versions of its float32 ``exp``, ``sin`` and ``power`` at run time too.
Each gives a float32 result that can be one unit in the last place off. Now and then such a difference moves
a pixel across a uint8 rounding boundary, and the JPEG bytes change (``dvc.lock`` then disagrees between
machines). The plain arithmetic of both libraries (+, -, *, /, sqrt, comparisons) rounds exactly and is safe.

So the generator runs OpenCV on its plain code paths (``baseline_opencv``) and takes the transcendental
functions of its float32 images through the helpers below, which compute in float64 and round the result to
float32. Implementations can disagree in the last float64 digit, but that changes a float32 result about once
in 2**29 values, and a uint8 pixel far less often; the same holds where the generator already works in
float64 (contours, lid and lip curves, angles). libjpeg-turbo's SIMD code is bit-exact with its C code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np


@contextmanager
def baseline_opencv() -> Iterator[None]:
    """Run OpenCV without its CPU-dispatched SIMD kernels and IPP inside the block, then restore the setting.

    The setting is global to the process, so other threads see it while the block runs. The thread count is
    left alone: the functions the generator calls compute each pixel the same way in any stripe.
    """
    optimized = cv2.useOptimized()
    cv2.setUseOptimized(False)
    try:
        yield
    finally:
        cv2.setUseOptimized(optimized)


def exp(x: np.ndarray | float) -> np.ndarray:
    """``np.exp`` computed in float64, as float32."""
    return np.exp(np.asarray(x, np.float64)).astype(np.float32)


def sin(x: np.ndarray | float) -> np.ndarray:
    """``np.sin`` computed in float64, as float32."""
    return np.sin(np.asarray(x, np.float64)).astype(np.float32)


def power(x: np.ndarray | float, exponent: np.ndarray | float) -> np.ndarray:
    """``x ** exponent`` computed in float64, as float32. An integer-valued or fractional exponent both go
    through ``pow``, which has per-CPU SIMD versions."""
    return np.power(np.asarray(x, np.float64), np.asarray(exponent, np.float64)).astype(np.float32)
