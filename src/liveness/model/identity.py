"""The frozen identity network f of claim 7 (step S105), which keeps the clear face the same person.

Choices (``identity.backbone``):

- ``vggface2``: the real one. facenet-pytorch's ``InceptionResnetV1(classify=False)`` with the VGGFace2
  weights, its last FC (``logits``) removed; 512-d L2-normalised embedding at 160 px. The weights are read
  from a given file or from the torch hub cache; they are never downloaded implicitly and never replaced by
  random weights.
- ``dlib_resnet``: a real one that installs offline. dlib's face-recognition ResNet
  (``dlib_face_recognition_resnet_model_v1.dat``, CC0, from the ``face-recognition-models`` package, or a given
  file), ported to torch in ``dlib_resnet`` and read by our own ``dlib_format``; 128-d embedding of a 150-px
  chip that ``DlibChipFraming`` resamples from our crop.
- ``onet``: an honest offline stand-in. MTCNN's output network ships pretrained inside facenet-pytorch; its
  256-d penultimate features describe face structure, not identity.
- ``none``: no f; L_id is dropped and the run records it.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1
from facenet_pytorch.models.mtcnn import ONet
from torch import nn

from liveness.model.dlib_format import DlibFormatError
from liveness.model.dlib_resnet import CHIP_SIZE, EMBEDDING_DIM, DlibChipFraming, load_dlib_resnet

VGGFACE2_FILENAME = "20180402-114759-vggface2.pt"
VGGFACE2_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{VGGFACE2_FILENAME}"
DLIB_RESNET_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_RESNET_PACKAGE = "face-recognition-models==0.3.0"
BACKBONES = ("vggface2", "dlib_resnet", "onet", "none")


class IdentityWeightsError(RuntimeError):
    """The identity network's weights are missing or unusable; the message says what to do."""


class IdentityNetwork(nn.Module):
    """Frozen f: images in [-1, 1] at any size -> embeddings (N, M).

    Resizes to the backbone's own input size (unless the backbone frames the crop itself: ``resize_input``
    False) and rescales to its own normalisation; ``weights`` is the file it was loaded from. Its parameters never
    require grad and it stays in eval mode even when a parent calls ``.train()`` (BatchNorm and dropout
    never change), but gradients flow through it to its input, so L_id trains the clear-face path.
    """

    def __init__(self, backbone: nn.Module, name: str, input_size: int, input_scale: float, embedding_dim: int,
                 stand_in: bool, resize_input: bool = True, weights: Path | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.input_size = input_size
        self.input_scale = input_scale
        self.embedding_dim = embedding_dim
        self.stand_in = stand_in
        self.resize_input = resize_input  # False: the backbone frames any crop size itself (dlib_resnet)
        self.weights = weights
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "IdentityNetwork":
        return super().train(False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.resize_input and (image.shape[-1] != self.input_size or image.shape[-2] != self.input_size):
            image = F.interpolate(image, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.backbone(image * self.input_scale)


class _ONetPenultimate(nn.Module):
    """ONet up to its 256-d dense5 + PReLU features (the layer before its three output heads)."""

    def __init__(self, onet: ONet) -> None:
        super().__init__()
        self.onet = onet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.onet
        x = net.pool1(net.prelu1(net.conv1(x)))
        x = net.pool2(net.prelu2(net.conv2(x)))
        x = net.pool3(net.prelu3(net.conv3(x)))
        x = net.prelu4(net.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()  # the shipped weights expect this (Caffe) layout
        return net.prelu5(net.dense5(x.flatten(1)))


def vggface2_cache_paths() -> list[Path]:
    """Where facenet-pytorch's own download puts the weights, and torch hub's checkpoint folder."""
    torch_home = Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))
    hub_dir = Path(torch.hub.get_dir())
    paths = [torch_home / "checkpoints" / VGGFACE2_FILENAME, hub_dir / "checkpoints" / VGGFACE2_FILENAME]
    return list(dict.fromkeys(paths))


def _missing_weights_message(looked: list[Path]) -> str:
    where = "\n".join(f"  - {path}" for path in looked)
    return (
        f"VGGFace2 weights for the identity network (identity.backbone: vggface2) were not found. Looked in:\n{where}\n"
        f"Fix one of these ways:\n"
        f"  - put {VGGFACE2_FILENAME} (from {VGGFACE2_URL}) at one of those paths, or set identity.weights in "
        f"params.yaml to its path;\n"
        f"  - on a machine with internet access run `liveness identity fetch` and copy the file here;\n"
        f"  - or choose an explicit offline option: identity.backbone: onet (a stand-in, not identity) or "
        f"identity.backbone: none (drops the identity loss)."
    )


def resolve_vggface2_weights(weights: Path | None) -> Path:
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.is_file():
            raise IdentityWeightsError(_missing_weights_message([weights]))
        return weights
    candidates = vggface2_cache_paths()
    for path in candidates:
        if path.is_file():
            return path
    raise IdentityWeightsError(_missing_weights_message(candidates))


def load_vggface2_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load the VGGFace2 checkpoint safely (weights only) and drop the classifier FC (claim 7)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise IdentityWeightsError(
            f"{path} could not be read as a PyTorch state dict ({type(error).__name__}: {error}); it may be truncated. "
            f"Download {VGGFACE2_FILENAME} again."
        ) from None
    if not isinstance(state, dict):
        raise IdentityWeightsError(f"{path} holds a {type(state).__name__}, not a state dict of InceptionResnetV1")
    return {key: value for key, value in state.items() if not key.startswith("logits.")}


def build_vggface2(weights: Path | None) -> IdentityNetwork:
    path = resolve_vggface2_weights(weights)
    network = InceptionResnetV1(pretrained=None, classify=False)
    try:
        network.load_state_dict(load_vggface2_state_dict(path), strict=True)
    except RuntimeError as error:
        raise IdentityWeightsError(f"{path} does not match InceptionResnetV1: {error}") from None
    return IdentityNetwork(network, "vggface2", input_size=160, input_scale=127.5 / 128.0, embedding_dim=512,
                           stand_in=False, weights=path)


def dlib_resnet_package_path() -> Path | None:
    """Where ``face-recognition-models`` installed dlib's network file, or None when it is not installed.

    Found from the package's location without importing it: its ``__init__`` imports ``pkg_resources``,
    which setuptools 81 and later no longer ship, so ``face_recognition_model_location()`` fails there.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_RESNET_FILENAME


def resolve_dlib_resnet_weights(weights: Path | None) -> Path:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise IdentityWeightsError(
                f"identity.weights points at {path}, which does not exist. For identity.backbone: dlib_resnet set it "
                f"to a copy of {DLIB_RESNET_FILENAME}, or to null to use the one {DLIB_RESNET_PACKAGE} installs.")
        return path
    path = dlib_resnet_package_path()
    if path is None or not path.is_file():
        where = "is not installed" if path is None else f"is installed but {path} is missing"
        raise IdentityWeightsError(
            f"identity.backbone: dlib_resnet needs {DLIB_RESNET_FILENAME}, and the {DLIB_RESNET_PACKAGE} package that "
            f"ships it {where}. Fix one of these ways:\n"
            f"  - `pip install {DLIB_RESNET_PACKAGE}` (it is in requirements.lock; `make setup` installs it);\n"
            f"  - set identity.weights in params.yaml to a copy of {DLIB_RESNET_FILENAME};\n"
            f"  - or choose identity.backbone: onet (a stand-in, not identity) or none (drops the identity loss).")
    return path


def build_dlib_resnet(weights: Path | None, context: float = 2.0) -> IdentityNetwork:
    """dlib's face-recognition ResNet, framing crops of ``context`` x the face size onto its 150-px chip."""
    path = resolve_dlib_resnet_weights(weights)
    try:
        resnet = load_dlib_resnet(path)
    except DlibFormatError as error:
        raise IdentityWeightsError(f"not dlib's face-recognition ResNet: {error}. Reinstall {DLIB_RESNET_PACKAGE} or "
                                   f"point identity.weights at an intact {DLIB_RESNET_FILENAME}.") from None
    return IdentityNetwork(nn.Sequential(DlibChipFraming(context), resnet), "dlib_resnet", input_size=CHIP_SIZE,
                           input_scale=1.0, embedding_dim=EMBEDDING_DIM, stand_in=False, resize_input=False,
                           weights=path)


def build_onet() -> IdentityNetwork:
    onet = ONet(pretrained=False)
    weights = resources.files("facenet_pytorch") / "data" / "onet.pt"
    with resources.as_file(weights) as path:
        onet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # MTCNN feeds ONet RGB 48x48 crops standardised as (x - 127.5) / 128.
    return IdentityNetwork(_ONetPenultimate(onet), "onet", input_size=48, input_scale=127.5 / 128.0,
                           embedding_dim=256, stand_in=True)


def build_identity_network(backbone: str, weights: Path | None = None, context: float = 2.0) -> IdentityNetwork | None:
    """f for the chosen backbone, or None for ``none`` (L_id dropped).

    ``context`` is the crops' side over the face size (``curate.crop.context``); only dlib_resnet uses it, to
    find dlib's chip inside the crop.
    """
    if backbone == "vggface2":
        return build_vggface2(weights)
    if backbone == "dlib_resnet":
        return build_dlib_resnet(weights, context)
    if backbone == "onet":
        return build_onet()
    if backbone == "none":
        return None
    raise ValueError(f"unknown identity backbone {backbone!r}; choose one of {BACKBONES}")


def fetch_vggface2_weights(destination: Path | None = None, url: str = VGGFACE2_URL, progress: bool = True) -> Path:
    """Download the VGGFace2 weights where the network allows, check they load, then move them into place."""
    destination = Path(destination) if destination else vggface2_cache_paths()[0]
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(handle)
    try:
        torch.hub.download_url_to_file(url, temporary, progress=progress)
        check = InceptionResnetV1(pretrained=None, classify=False)
        try:
            check.load_state_dict(load_vggface2_state_dict(Path(temporary)), strict=True)
        except RuntimeError as error:
            raise IdentityWeightsError(f"{url} did not give InceptionResnetV1 weights: {error}") from None
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination
