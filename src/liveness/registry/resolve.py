"""Where a model named on the command line lives: a registry URI or a local folder, down to its bundle folder.

``models:/<name>@<alias>`` and ``models:/<name>/<version>`` name registered versions; anything else is a local
folder, either a bundle (``config.json`` + ``generator.pt``) or a saved pyfunc model (``MLmodel`` whose
``bundle`` artifact is the bundle). A source answers two questions: which revision is current (cheap, asked
on every poll) and where the bundle of a given revision is on disk (may download). A long-running server
uses the first to notice an alias move and the second to load the new version.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from liveness.bundle.files import CONFIG_FILE, GENERATOR_WEIGHTS, ONNX_FILE

MODELS_SCHEME = "models:/"
DEFAULT_MODEL = "models:/liveness@champion"  # what predict and serve load unless told otherwise
LOCAL_VERSION = "local"
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: exactly one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None
    version: str | None


def parse_model_uri(uri: str) -> ModelRef | None:
    """``models:/name@alias`` or ``models:/name/3`` -> ModelRef; a local path -> None; ValueError otherwise."""
    if not uri.startswith(MODELS_SCHEME):
        return None
    match = _MODEL_URI.match(uri)
    if match is None:
        raise ValueError(f"model URI {uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    return ModelRef(match["name"], match["alias"], match["version"])


def bundle_folder(path: Path) -> Path:
    """The bundle inside ``path``: ``path`` itself when it holds config.json, else the pyfunc ``bundle`` artifact."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        from liveness.registry.pyfunc_model import BUNDLE

        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
        relative = (flavor.get("artifacts") or {}).get(BUNDLE, {}).get("path")
        if relative and (path / relative / CONFIG_FILE).is_file():
            return path / relative
        raise FileNotFoundError(f"{mlmodel} has no {BUNDLE!r} artifact with {CONFIG_FILE}; it is not a liveness "
                                "model (register one with `python -m pipeline.register`)")
    raise FileNotFoundError(f"{path} is neither a model bundle ({CONFIG_FILE} + {GENERATOR_WEIGHTS}) nor a pyfunc "
                            "model folder (MLmodel); pass models:/<name>@<alias> or a bundle folder")


class ModelSource(Protocol):
    uri: str
    name: str

    def revision(self) -> str:
        """An id that changes whenever the model behind the source changes; cheap enough to poll."""

    def version(self, revision: str) -> str:
        """The version to report to clients for ``revision`` ("local" for a folder)."""

    def fetch(self, revision: str, workdir: Path) -> Path:
        """The bundle folder of ``revision``; downloads go under ``workdir`` (which the caller owns)."""


class RegistrySource:
    """A registered model: a pinned version, or an alias re-read on each ``revision()``."""

    def __init__(self, uri: str, tracking_uri: str | None = None) -> None:
        from mlflow import MlflowClient

        from liveness.mlflow_store import tracking_uri as resolve_tracking_uri

        ref = parse_model_uri(uri)
        if ref is None:
            raise ValueError(f"{uri!r} is not a models:/ URI")
        self.uri, self.ref, self.name = uri, ref, ref.name
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self._client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def revision(self) -> str:
        if self.ref.version is not None:
            return self.ref.version
        return str(self._client.get_model_version_by_alias(self.name, self.ref.alias).version)

    def version(self, revision: str) -> str:
        return revision

    def fetch(self, revision: str, workdir: Path) -> Path:
        import mlflow.artifacts

        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{MODELS_SCHEME}{self.name}/{revision}",
                                                    dst_path=str(workdir), tracking_uri=self.tracking_uri,
                                                    registry_uri=self.tracking_uri)
        return bundle_folder(Path(local))


class LocalSource:
    """A folder on disk; its revision is the size and modification time of the weights and config."""

    WATCHED = (GENERATOR_WEIGHTS, ONNX_FILE, CONFIG_FILE)

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.uri, self.name = str(folder), self.folder.resolve().name

    def revision(self) -> str:
        bundle = bundle_folder(self.folder)
        present = [bundle / name for name in self.WATCHED if (bundle / name).is_file()]
        return "-".join(f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in present)

    def version(self, revision: str) -> str:
        return LOCAL_VERSION

    def fetch(self, revision: str, workdir: Path) -> Path:
        return bundle_folder(self.folder)


def open_source(uri: str, tracking_uri: str | None = None) -> ModelSource:
    """A RegistrySource for ``models:/`` URIs, else a LocalSource (FileNotFoundError when the folder is absent)."""
    if parse_model_uri(uri) is not None:
        return RegistrySource(uri, tracking_uri)
    if not Path(uri).is_dir():
        raise FileNotFoundError(f"model {uri!r} is not a models:/ URI and no such folder exists")
    return LocalSource(uri)


def fetch_bundle(uri: str, tracking_uri: str | None, workdir: Path) -> Path:
    """The bundle folder ``uri`` names now: a registered version (its alias read once) downloaded under
    ``workdir``, or a local bundle or pyfunc model folder as it is."""
    source = open_source(uri, tracking_uri)
    return source.fetch(source.revision(), workdir)
