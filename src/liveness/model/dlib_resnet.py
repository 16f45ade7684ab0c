"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in torch, for the identity net f.

A real, pretrained face-identity network (claim 7's f): a 128-d embedding in which two photos of one person lie
closer than 0.6 (euclidean), 99.38% on LFW by its author's report. The weights are dlib's own file (CC0, shipped
by the ``face-recognition-models`` package), read by ``dlib_format``; this module rebuilds the network from
``anet_type`` in dlib's ``examples/dnn_face_recognition_ex.cpp``:

- ``input_rgb_image_sized<150>``: 150x150 RGB, (pixel - channel mean) / 256, means from the file
  (122.782, 117.001, 104.298);
- ``con<32,7,7,2,2>``, ``affine``, ``relu``, ``max_pool<3,3,2,2>``;
- 14 residual blocks (3 x 32, 4 x 64, 3 x 128, 4 x 256 filters). Each is conv3x3, affine, relu, conv3x3,
  affine, plus the shortcut, then relu. The first block of each width is ``ares_down``: its first conv has
  stride 2 and its shortcut is a 2x2 stride-2 average pool, added with zero padding where the two branches
  differ in channels or size (dlib's ``add_prev``, e.g. 3x3 + 4x4 at 256 filters);
- ``avg_pool_everything`` and ``fc_no_bias<128>``.

dlib's conventions, kept exactly: ``affine_`` is inference-mode batch norm (gamma * x + beta per channel); a
stride-2 conv or pool pads nothing and rounds its output size down (dlib's default padding is
``stride != 1 ? 0 : size/2``); convolutions are cross-correlations as in torch.

``DlibResNet`` takes dlib chips in 0..255 pixel units. ``DlibChipFraming`` maps our crops onto such chips (its
docstring gives the geometry). Both are frozen and always in eval mode, but pass gradients to their input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from liveness.model.dlib_format import (
    Affine,
    AddPrev,
    Conv,
    DlibFormatError,
    DlibNet,
    FullyConnected,
    Pool,
    Relu,
    Skip,
    Spec,
    Tag,
    read_dlib_net,
)

CHIP_SIZE = 150
EMBEDDING_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # dlib's decision threshold on the euclidean distance of two embeddings


# ------------------------------------------------------------------------------- anet_type, as dlib spells it


def _block(filters: int, stride: int, below: list[Spec]) -> list[Spec]:
    """``block<N,affine,stride>``: affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,SUBNET>>>>>."""
    return [Spec("affine"), Spec("con", (filters, 3, 3, 1, 1)), Spec("relu"), Spec("affine"),
            Spec("con", (filters, 3, 3, stride, stride)), *below]


def _ares(filters: int, below: list[Spec]) -> list[Spec]:
    """``ares<N>``: relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>."""
    return [Spec("relu"), Spec("add_prev", (1,)), *_block(filters, 1, [Spec("tag", (1,)), *below])]


def _ares_down(filters: int, below: list[Spec]) -> list[Spec]:
    """``ares_down<N>``: relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>."""
    return [Spec("relu"), Spec("add_prev", (2,)), Spec("avg_pool", (2, 2, 2, 2)), Spec("skip", (1,)),
            Spec("tag", (2,)), *_block(filters, 2, [Spec("tag", (1,)), *below])]


def _anet_type() -> tuple[Spec, ...]:
    net = [Spec("max_pool", (3, 3, 2, 2)), Spec("relu"), Spec("affine"), Spec("con", (32, 7, 7, 2, 2)),
           Spec("input_rgb_image_sized", (CHIP_SIZE, CHIP_SIZE))]
    for _ in range(3):  # alevel4
        net = _ares(32, net)
    net = _ares_down(64, net)  # alevel3
    for _ in range(3):
        net = _ares(64, net)
    net = _ares_down(128, net)  # alevel2
    for _ in range(2):
        net = _ares(128, net)
    net = _ares_down(256, net)  # alevel1
    for _ in range(2):
        net = _ares(256, net)
    net = _ares_down(256, net)  # alevel0
    return (Spec("loss_metric"), Spec("fc_no_bias", (EMBEDDING_DIM,)), Spec("avg_pool", (0, 0, 1, 1)), *net)


ANET_TYPE = _anet_type()  # loss_metric<fc_no_bias<128,avg_pool_everything<alevel0<...<input_rgb_image_sized<150>>>>>


def read_face_recognition_net(path: Path) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` completely; raises ``DlibFormatError``."""
    path = Path(path)
    return read_dlib_net(path.read_bytes(), ANET_TYPE, source=str(path))


# ------------------------------------------------------------------------------------------ torch modules


class DlibAffine(nn.Module):
    """dlib's ``affine_``: y = gamma * x + beta, per channel (batch norm folded for inference)."""

    def __init__(self, gamma: torch.Tensor, beta: torch.Tensor) -> None:
        super().__init__()
        self.gamma = nn.Parameter(gamma.reshape(1, *gamma.shape), requires_grad=False)
        self.beta = nn.Parameter(beta.reshape(1, *beta.shape), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, each input counted as zero outside its own extent."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1]))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """``ares`` (identity shortcut) or ``ares_down`` (stride-2 first conv, 2x2 average-pool shortcut)."""

    def __init__(self, conv1: nn.Conv2d, affine1: DlibAffine, conv2: nn.Conv2d, affine2: DlibAffine,
                 downsample: bool) -> None:
        super().__init__()
        self.conv1, self.affine1, self.conv2, self.affine2 = conv1, affine1, conv2, affine2
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, kernel_size=2, stride=2) if self.downsample else x
        return F.relu(add_zero_padded(y, shortcut))


class DlibResNet(nn.Module):
    """The ported network: dlib chips (N, 3, 150, 150), RGB in 0..255 pixel units -> embeddings (N, 128).

    Frozen: no parameter requires grad, and it stays in eval mode whatever ``.train()`` is called with.
    """

    def __init__(self, stem: nn.Sequential, blocks: nn.Sequential, fc: nn.Linear, mean_rgb: tuple[float, float, float],
                 distance_threshold: float) -> None:
        super().__init__()
        self.stem, self.blocks, self.fc = stem, blocks, fc
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.distance_threshold = distance_threshold
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "DlibResNet":
        return super().train(False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"dlib's face ResNet takes (N, 3, {CHIP_SIZE}, {CHIP_SIZE}) chips, got "
                             f"{tuple(chips.shape)}; DlibChipFraming makes them from our crops")
        x = (chips - self.mean_rgb) / 256.0
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


class DlibChipFraming(nn.Module):
    """Differentiable resampling of our aligned crops onto dlib's 150x150 face chip, in dlib's pixel units.

    Our crops (``liveness.data.faces.align_and_crop``) are square, of any side S, with the 5 landmarks
    similarity-aligned to ArcFace's 112-px template scaled into the central S/context square; images are in
    [-1, 1]. dlib's chip (``get_face_chip_details(shape, 150, 0.25)``) aligns its 5-point landmarks to its
    mean face with 25% padding. Least squares between the two templates' eye centres, nose tip and mouth
    corners (dlib's 68-point mean face, padding 0.25, against ArcFace's template; 1.5 px RMS at 150 px, no
    rotation) gives chip_px = 1.44945 * t112 + (-7.19446, -29.05516): the chip is a square of 103.5
    template px whose top is 20 px below the template's top. At context 2 that is the crop window
    x in [0.272, 0.734] S, y in [0.339, 0.801] S, inside the crop for any context above about 1.6.

    The window is sampled bilinearly with ``grid_sample`` (no antialiasing, fine from S up to about 200 px)
    and rescaled from [-1, 1] to 0..255. Outside the crop it repeats the border.
    """

    SCALE_FROM_TEMPLATE112 = 1.44945
    OFFSET_FROM_TEMPLATE112 = (-7.19446, -29.05516)

    def __init__(self, context: float = 2.0) -> None:
        super().__init__()
        if context <= 0:
            raise ValueError(f"crop context must be positive, got {context}")
        self.context = context
        # chip_px = s * t112 + t and t112 = 112 * context * (u - (1 - 1/context) / 2), u in [0, 1] across the crop.
        scale = self.SCALE_FROM_TEMPLATE112 * 112.0 * context / CHIP_SIZE  # chip units per crop unit
        offsets = [(t - self.SCALE_FROM_TEMPLATE112 * 112.0 * context * (1 - 1 / context) / 2) / CHIP_SIZE
                   for t in self.OFFSET_FROM_TEMPLATE112]
        # affine_grid maps chip coordinates x_out in [-1, 1] to crop coordinates x_in = (x_out + 1 - 2 b) / a - 1.
        theta = torch.tensor([[1 / scale, 0.0, (1 - 2 * offsets[0]) / scale - 1],
                              [0.0, 1 / scale, (1 - 2 * offsets[1]) / scale - 1]], dtype=torch.float32)
        self.register_buffer("theta", theta)

    def crop_window(self) -> tuple[float, float, float, float]:
        """The chip's extent in crop units (x0, x1, y0, y1), 0..1 being the crop's side."""
        (ax, _, cx), (_, ay, cy) = self.theta.tolist()
        return ((cx - ax + 1) / 2, (cx + ax + 1) / 2, (cy - ay + 1) / 2, (cy + ay + 1) / 2)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.theta.to(crops.dtype).expand(crops.shape[0], 2, 3),
                             [crops.shape[0], crops.shape[1], CHIP_SIZE, CHIP_SIZE], align_corners=False)
        chips = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return (chips + 1.0) * 127.5


# ------------------------------------------------------------------------------------------- the builder


def _conv(layer: Conv, in_channels: int, source: str) -> nn.Conv2d:
    if layer.weight.shape[1] != in_channels:
        raise DlibFormatError(f"con_ has filters over {layer.weight.shape[1]} channels but its input has {in_channels}",
                              offset=layer.offset, field="con_ filters", source=source)
    if layer.relu:
        raise DlibFormatError("con_ with a fused ReLU does not occur in anet_type", offset=layer.offset,
                              field="con_ use_relu", source=source)
    conv = nn.Conv2d(in_channels, layer.num_filters, layer.kernel, stride=layer.stride, padding=layer.padding,
                     bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            conv.bias.copy_(torch.from_numpy(layer.bias))
    return conv


def _affine(layer: Affine, channels: int, source: str) -> DlibAffine:
    if layer.gamma is None or layer.beta is None:
        raise DlibFormatError("a disabled affine_ layer does not occur in anet_type", offset=layer.offset,
                              field="affine_ disabled", source=source)
    if layer.gamma.shape != (channels, 1, 1):
        raise DlibFormatError(f"affine_ gamma of shape {layer.gamma.shape} after a {channels}-channel conv",
                              offset=layer.offset, field="affine_ gamma", source=source)
    return DlibAffine(torch.from_numpy(layer.gamma), torch.from_numpy(layer.beta))


def build_dlib_resnet(net: DlibNet) -> DlibResNet:
    """Torch modules from a parsed ``ANET_TYPE`` file (its layers in forward order)."""
    layers = list(net.layers)
    conv, affine, relu, pool = layers[:4]
    assert isinstance(conv, Conv) and isinstance(affine, Affine) and isinstance(relu, Relu) and isinstance(pool, Pool)
    stem_conv = _conv(conv, 3, net.source)
    stem = nn.Sequential(stem_conv, _affine(affine, conv.num_filters, net.source), nn.ReLU(),
                         nn.MaxPool2d(pool.window, pool.stride, pool.padding))
    channels, index, blocks = conv.num_filters, 4, []
    while isinstance(layers[index], Tag):
        downsample = isinstance(layers[index + 6], Tag)  # ares_down tags its residual branch (tag2)
        c1, a1, _, c2, a2 = layers[index + 1:index + 6]
        assert isinstance(c1, Conv) and isinstance(a1, Affine) and isinstance(c2, Conv) and isinstance(a2, Affine)
        conv1 = _conv(c1, channels, net.source)
        block = ResidualBlock(conv1, _affine(a1, c1.num_filters, net.source), _conv(c2, c1.num_filters, net.source),
                              _affine(a2, c2.num_filters, net.source), downsample)
        tail = layers[index + 6:index + (11 if downsample else 8)]
        expected = (Tag, Skip, Pool, AddPrev, Relu) if downsample else (AddPrev, Relu)
        assert tuple(type(item) for item in tail) == expected, tail
        blocks.append(block)
        channels = max(channels, c2.num_filters)
        index += 11 if downsample else 8
    final_pool, fc = layers[index:]
    assert isinstance(final_pool, Pool) and final_pool.window == (0, 0) and isinstance(fc, FullyConnected)
    if fc.num_inputs != channels:
        raise DlibFormatError(f"fc_ takes {fc.num_inputs} inputs but the last block gives {channels} channels",
                              offset=fc.offset, field="fc_ num_inputs", source=net.source)
    linear = nn.Linear(fc.num_inputs, fc.num_outputs, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(fc.weight.T.copy()))
    return DlibResNet(stem, nn.Sequential(*blocks), linear, net.input.mean_rgb, net.loss.distance_threshold)


def load_dlib_resnet(path: Path) -> DlibResNet:
    """Read dlib's file and build the frozen torch network from it."""
    return build_dlib_resnet(read_face_recognition_net(path))
