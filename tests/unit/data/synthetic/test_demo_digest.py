"""The demo data is the same bytes on every machine of one kind: regenerate it and compare with the committed digest.

``tests/fixtures/demo_digest.json`` holds the digest (``writer.tree_digest``) of the default demo set (the
params.yaml ``demo`` section) and of a small set with every attack species. After a deliberate change to the
bytes (bump ``GENERATOR_VERSION``), rewrite it with ``python -m tests.fixtures.demo_digest``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from liveness.data.synthetic.writer import GENERATOR_VERSION
from tests.fixtures.demo_digest import DIGESTS, REGENERATE, SMALL, default_params, digest_of
from tests.fixtures.paths import PROJECT_ROOT

# Every CPU-dispatched path of NumPy, OpenCV and libjpeg-turbo off: what a processor with fewer features runs.
OPENCV_DISPATCH = "SSE4.1,SSE4.2,POPCNT,FP16,AVX,AVX2,FMA3,AVX512-SKX"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(DIGESTS.read_text())


def test_the_digests_are_for_this_generator_and_the_default_params(recorded):
    assert recorded["generator_version"] == GENERATOR_VERSION, f"GENERATOR_VERSION changed: run `{REGENERATE}`"
    assert recorded["sets"]["default"]["params"] == default_params(), f"params.yaml demo changed: run `{REGENERATE}`"
    assert recorded["sets"]["small"]["params"] == SMALL


def test_the_small_set_has_its_committed_digest(recorded, tmp_path):
    expected = recorded["sets"]["small"]
    assert digest_of(SMALL, tmp_path / "demo") == {key: expected[key] for key in ("files", "bytes", "sha256")}


def test_the_small_set_does_not_depend_on_cpu_dispatch(recorded, tmp_path):
    """A process with NumPy's, OpenCV's and libjpeg-turbo's SIMD dispatch off writes the committed bytes too."""
    from numpy._core import _multiarray_umath

    environment = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(_multiarray_umath.__cpu_dispatch__),
                   "OPENCV_CPU_DISABLE": OPENCV_DISPATCH, "JSIMD_FORCENONE": "1"}
    script = ("import json, sys; from pathlib import Path; from tests.fixtures.demo_digest import "
              "SMALL, digest_of; print(json.dumps(digest_of(SMALL, Path(sys.argv[1]))))")
    completed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "demo")], cwd=PROJECT_ROOT,
                               env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = recorded["sets"]["small"]
    assert json.loads(completed.stdout) == {key: expected[key] for key in ("files", "bytes", "sha256")}


@pytest.mark.slow
def test_the_default_demo_set_has_its_committed_digest(recorded, tmp_path):
    """What `dvc repro` writes to data/raw/demo (about 20 s on 2 cores); dvc.lock records the same bytes."""
    expected = recorded["sets"]["default"]
    digest = digest_of(default_params(), tmp_path / "demo")
    assert digest == {key: expected[key] for key in ("files", "bytes", "sha256")}, (
        f"the demo data's bytes changed; if on purpose, bump GENERATOR_VERSION and run `{REGENERATE}`")
