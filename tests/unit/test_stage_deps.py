"""pipeline.stage_deps: the import graph it walks, the deps it writes, and this repository's dvc.yaml kept in step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline import stage_deps
from pipeline.stage_deps import (
    covering_deps,
    drift,
    entry_module,
    import_closure,
    imported_names,
    module_file,
    rewrite_deps,
)
from tests.fixtures.paths import PROJECT_ROOT


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    """pipeline/stage.py -> liveness.a (inside a function) -> liveness.pkg.b (via ``from liveness.pkg import b``);
    pipeline.other and liveness.pkg.c are imported by nobody; liveness.pkg.b imports numpy and a relative sibling."""
    return _tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/stage.py": "import os\n\ndef run():\n    from liveness import a\n",
        "pipeline/other.py": "",
        "src/liveness/__init__.py": "",
        "src/liveness/a.py": "from liveness.pkg import b\n",
        "src/liveness/pkg/__init__.py": "",
        "src/liveness/pkg/b.py": "import numpy\nfrom .d import thing\n",
        "src/liveness/pkg/c.py": "",
        "src/liveness/pkg/d.py": "thing = 1\n",
    })


class TestImportGraph:
    def test_follows_function_level_submodule_and_relative_imports(self, project):
        assert import_closure("pipeline.stage", project) == {
            "pipeline/__init__.py", "pipeline/stage.py", "src/liveness/__init__.py", "src/liveness/a.py",
            "src/liveness/pkg/__init__.py", "src/liveness/pkg/b.py", "src/liveness/pkg/d.py",
        }

    def test_names_of_from_imports_include_the_candidate_submodule(self):
        names = imported_names("from liveness.data import augment, AugmentConfig\n", "pipeline.train", False)
        assert names == {"liveness.data", "liveness.data.augment", "liveness.data.AugmentConfig"}

    def test_relative_import_inside_a_package_init(self):
        assert imported_names("from . import b\nfrom .. import z\n", "liveness.pkg", True) == {
            "liveness.pkg", "liveness.pkg.b", "liveness", "liveness.z"}

    def test_only_project_packages_resolve(self, project):
        assert module_file("numpy", project) is None and module_file("liveness.pkg.missing", project) is None
        assert module_file("liveness.pkg", project) == project / "src/liveness/pkg/__init__.py"

    def test_an_entry_without_a_source_file_is_an_error(self, project):
        with pytest.raises(ValueError, match="pipeline.nothing"):
            import_closure("pipeline.nothing", project)


LAZY_INIT = """
from importlib import import_module

_EXPORTS = {
    **dict.fromkeys(("Loader", "load"), "liveness.lazy.loading"),
    "Scorer": "liveness.lazy.scoring",
    "VERSION": "2",  # not a module: ignored
}


def __getattr__(name):
    return getattr(import_module(_EXPORTS[name]), name)
"""


@pytest.fixture
def lazy_project(tmp_path) -> Path:
    """liveness.lazy loads Loader/load and Scorer from its submodules on first use (PEP 562), as liveness.bundle
    and liveness.model do; scoring.py imports liveness.deep."""
    return _tree(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/names_one.py": "from liveness.lazy import Loader\n",
        "pipeline/plain.py": "import liveness.lazy\n",
        "src/liveness/__init__.py": "",
        "src/liveness/deep.py": "",
        "src/liveness/lazy/__init__.py": LAZY_INIT,
        "src/liveness/lazy/loading.py": "",
        "src/liveness/lazy/scoring.py": "from liveness import deep\n",
    })


class TestLazyExports:
    """A name a package loads on first use is an import of the module that holds it: the register stage once
    missed the whole Predictor (liveness.bundle's table), so a change to it left `dvc status` up to date."""

    def test_the_table_is_read_from_the_package_init(self):
        assert stage_deps.lazy_exports(LAZY_INIT) == {
            "Loader": "liveness.lazy.loading", "load": "liveness.lazy.loading", "Scorer": "liveness.lazy.scoring"}
        assert stage_deps.lazy_exports(LAZY_INIT.replace("def __getattr__", "def other")) == {}

    def test_from_import_of_a_lazy_name_follows_its_module_only(self, lazy_project):
        files = import_closure("pipeline.names_one", lazy_project)
        assert "src/liveness/lazy/loading.py" in files
        assert "src/liveness/lazy/scoring.py" not in files and "src/liveness/deep.py" not in files

    def test_a_plain_import_of_the_package_follows_every_module_of_the_table(self, lazy_project):
        files = import_closure("pipeline.plain", lazy_project)
        assert {"src/liveness/lazy/loading.py", "src/liveness/lazy/scoring.py", "src/liveness/deep.py"} <= files

    def test_this_repository_s_register_stage_reaches_the_predictor(self):
        files = import_closure("pipeline.register", PROJECT_ROOT)
        assert {"src/liveness/bundle/predictor.py", "src/liveness/data/faces.py"} <= files


class TestCoveringDeps:
    def test_a_folder_stands_for_its_files_only_when_all_are_imported(self, project):
        files = import_closure("pipeline.stage", project)
        assert covering_deps(files, project, "pipeline/stage.py") == [
            "pipeline/stage.py", "pipeline/__init__.py", "src/liveness/__init__.py", "src/liveness/a.py",
            "src/liveness/pkg/__init__.py", "src/liveness/pkg/b.py", "src/liveness/pkg/d.py"]
        everything = files | {"src/liveness/pkg/c.py"}
        assert covering_deps(everything, project, "pipeline/stage.py") == [
            "pipeline/stage.py", "pipeline/__init__.py", "src/liveness"]


class TestDrift:
    def test_a_missing_module_and_a_stale_code_dep_are_both_reported(self):
        files = {"pipeline/stage.py", "src/liveness/a.py"}
        found = drift("stage", ["pipeline/stage.py", "src/liveness/old.py", "data/raw"], files)
        assert found.missing == ("src/liveness/a.py",) and found.extra == ("src/liveness/old.py",) and found

    def test_a_folder_dep_covers_what_is_inside_it(self):
        assert not drift("stage", ["pipeline", "src/liveness/"], {"pipeline/stage.py", "src/liveness/a/b.py"})


class TestDvcYaml:
    @pytest.mark.parametrize("cmd, module", [
        ("python -m pipeline.curate live", "pipeline.curate"),
        ("python -m pipeline.train --no-progress", "pipeline.train"),
        ("python3.11 -m pipeline.demo_data", "pipeline.demo_data"),
    ])
    def test_entry_module_of_a_stage_cmd(self, cmd, module):
        assert entry_module("stage", cmd) == module

    @pytest.mark.parametrize("cmd", ["python pipeline/train.py", "make train", ["python", "-m", "x"]])
    def test_a_cmd_that_is_not_python_dash_m_is_an_error(self, cmd):
        with pytest.raises(ValueError, match="python -m"):
            entry_module("stage", cmd)

    def test_write_keeps_data_deps_comments_and_the_rest_of_the_file(self, project):
        text = textwrap.dedent("""\
            # a comment that stays
            stages:
              stage:
                cmd: python -m pipeline.stage
                deps:
                  - pipeline/stage.py
                  - src/liveness/old.py
                  - data/raw
                params:
                  - base.seed
            plots:
              - a.csv
            """)
        (project / "dvc.yaml").write_text(text)
        assert stage_deps.main(["--check", "--root", str(project)]) == 1
        assert stage_deps.main(["--write", "--root", str(project)]) == 0
        written = (project / "dvc.yaml").read_text()
        assert written.startswith("# a comment that stays\n") and written.endswith("plots:\n  - a.csv\n")
        deps = yaml.safe_load(written)["stages"]["stage"]["deps"]
        assert deps[0] == "pipeline/stage.py" and deps[-1] == "data/raw" and "src/liveness/old.py" not in deps
        assert stage_deps.main(["--check", "--root", str(project)]) == 0

    def test_rewrite_needs_a_deps_block(self):
        with pytest.raises(ValueError, match="no `    deps:` block"):
            rewrite_deps("stages:\n  stage:\n    cmd: python -m x\n", {"stage": ["x.py"]})


class TestThisRepository:
    """The committed dvc.yaml against the code as it is now: fails when an import is added without its dep."""

    def test_every_stage_depends_on_every_module_it_imports(self):
        drifted = stage_deps.check(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text()), PROJECT_ROOT)
        assert not drifted, (f"dvc.yaml deps drifted from the import graph: {drifted}; "
                             f"run `python -m pipeline.stage_deps --write`")

    def test_train_reaches_shards_in_two_imports(self):
        """The module the e2e edit test changes: not imported by pipeline/train.py itself, but by a module it imports."""
        direct = imported_names((PROJECT_ROOT / "pipeline/train.py").read_text(), "pipeline.train", False)
        assert "liveness.data.shards" not in direct and "liveness.train.stage" in direct
        stage = imported_names((PROJECT_ROOT / "src/liveness/train/stage.py").read_text(), "liveness.train.stage", False)
        assert "liveness.data.shards" in stage

    def test_folder_deps_hash_the_code_not_pythons_bytecode_caches(self):
        """A folder dep's hash in dvc.lock must not change when Python writes __pycache__ into it (it did: a fresh
        clone saw every stage with a code folder as changed once anything had run)."""
        import subprocess
        import sys

        dvc = Path(sys.executable).parent / "dvc"
        folder = "src/liveness/data/synthetic"
        for path, ignored in ((f"{folder}/__pycache__/faces.cpython-311.pyc", True), (f"{folder}/stray.pyc", True),
                              (f"{folder}/faces.py", False)):
            completed = subprocess.run([str(dvc), "check-ignore", path], cwd=PROJECT_ROOT, capture_output=True,
                                       text=True, timeout=120)
            assert (completed.returncode == 0) is ignored, (path, completed.stdout, completed.stderr)
