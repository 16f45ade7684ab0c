"""Reader for dlib's serialised DNN files (``net_type`` written with ``dlib::serialize``), in plain Python/numpy.

Our own reading of dlib's documented format, no dlib import:

- ``dlib/serialize.h``: an integer is a control byte (bit 7: negative, bits 0-3: how many little-endian
  bytes of the absolute value follow, bits 4-6 always 0), then those bytes. A float or double is dlib's
  portable ``float_details``: mantissa (int64) then exponent (int16), each as an integer; value =
  mantissa * 2**exponent, exponents 32000/32001/32002 mean +inf/-inf/nan. A ``std::string`` is its length
  (unsigned integer) then its bytes; a bool is the ASCII byte ``'1'`` or ``'0'``.
- ``dlib/cuda/tensor.h``: a tensor is version 2, then num_samples, k, nr, nc (integers), then that many
  little-endian float32s; an ``alias_tensor`` is version 1 and the four sizes only.
- ``dlib/dnn/core.h``: a network is nested types. ``add_loss_layer`` writes version 1, its loss, then its
  subnetwork; ``add_layer`` writes its version, its whole subnetwork, then its layer details, three bools and
  its cached tensors; ``add_tag_layer`` and ``add_skip_layer`` write version 1 and their subnetwork. So a file
  holds every layer's version top-down, then the input layer, then each layer's details bottom-up.
- The layers' own ``serialize`` (``dlib/dnn/layers.h``, ``input.h``, ``loss.h``) start with a version string
  (``con_4``, ``affine_``, ``relu_``, ...) and write their hyperparameters and parameter tensors.

The format does not name its structure (a tag layer and an ``add_layer`` of version 1 look alike), so,
like dlib, the reader is given the expected network type: a tuple of ``Spec`` from the top (the loss) to the
bottom (the input). It checks every hyperparameter against it, consumes every byte, and raises
``DlibFormatError`` with the byte offset and the field on anything unexpected. Every size it is told is
checked against the bytes that remain before anything is allocated, and every loop is bounded by the
spec's length, so truncated or corrupted files fail fast instead of hanging or exhausting memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

MAX_STRING_BYTES = 256  # dlib's version strings are short; anything longer means this is not such a file
_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002
_CONV_MODE, _FC_MODE = 0, 1  # dlib's layer_mode
_FC_HAS_BIAS, _FC_NO_BIAS = 0, 1  # dlib's fc_bias_mode


class DlibFormatError(ValueError):
    """The file is not the dlib network it should be; says where (byte offset) and which field."""

    def __init__(self, message: str, *, offset: int, field: str, source: str) -> None:
        self.offset, self.field, self.source = offset, field, source
        super().__init__(f"{source}: at byte {offset} ({field}): {message}")


# ---------------------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Spec:
    """One layer of the expected network type, as dlib's template spells it.

    ``kind`` is one of ``loss_metric``, ``fc``, ``fc_no_bias``, ``con``, ``affine``, ``relu``, ``max_pool``,
    ``avg_pool``, ``add_prev``, ``tag``, ``skip``, ``input_rgb_image_sized``; ``args`` are the template's
    integers: con (num_filters, nr, nc, stride_y, stride_x), pools (nr, nc, stride_y, stride_x), fc
    (num_outputs), add_prev/tag/skip (tag id), input (nr, nc).
    """

    kind: str
    args: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}{'<' + ','.join(map(str, self.args)) + '>' if self.args else ''}"


# ------------------------------------------------------------------------------------------ the results


@dataclass(frozen=True)
class Conv:
    offset: int
    num_filters: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    weight: np.ndarray  # (num_filters, in_channels, nr, nc), dlib's and torch's layout
    bias: np.ndarray | None  # (num_filters,)
    relu: bool  # con_6's fused ReLU


@dataclass(frozen=True)
class Affine:
    offset: int
    gamma: np.ndarray | None  # (k, 1, 1) in conv mode, (k, nr, nc) in fc mode; None when disabled
    beta: np.ndarray | None


@dataclass(frozen=True)
class Relu:
    offset: int


@dataclass(frozen=True)
class Pool:
    offset: int
    kind: str  # "max" or "avg"
    window: tuple[int, int]  # (0, 0): the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class FullyConnected:
    offset: int
    num_outputs: int
    num_inputs: int
    weight: np.ndarray  # (num_inputs, num_outputs): dlib computes output = input @ weight
    bias: np.ndarray | None


@dataclass(frozen=True)
class AddPrev:
    offset: int
    tag: int


@dataclass(frozen=True)
class Tag:
    offset: int
    id: int


@dataclass(frozen=True)
class Skip:
    offset: int
    tag: int


@dataclass(frozen=True)
class InputRGB:
    offset: int
    mean_rgb: tuple[float, float, float]  # subtracted from 0..255 pixels, which are then divided by 256
    size: tuple[int, int]


@dataclass(frozen=True)
class LossMetric:
    offset: int
    margin: float
    distance_threshold: float


Layer = Conv | Affine | Relu | Pool | FullyConnected | AddPrev | Tag | Skip


@dataclass(frozen=True)
class DlibNet:
    """A parsed network: its loss, its input layer and its layers in forward order (input side first)."""

    loss: LossMetric
    input: InputRGB
    layers: tuple[Layer, ...]
    size: int  # bytes read, which is the whole file
    source: str


# --------------------------------------------------------------------------------------- the byte stream


class _Stream:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.source = source

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, message: str, field: str, offset: int | None = None) -> NoReturn:
        raise DlibFormatError(message, offset=self.pos if offset is None else offset, field=field, source=self.source)

    def take(self, count: int, field: str) -> memoryview:
        if count > self.remaining:
            self.fail(f"needs {count} bytes but the file ends after {self.remaining} (truncated file?)", field)
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self, field: str, size: int, signed: bool) -> int:
        """A C++ integral type of ``size`` bytes in dlib's control-byte encoding."""
        start = self.pos
        control = self.take(1, field)[0]
        if control & 0x70:
            self.fail(f"control byte 0x{control:02x} sets reserved bits; not a dlib integer", field, start)
        negative, length = bool(control & 0x80), control & 0x0F
        if negative and not signed:
            self.fail(f"negative value for an unsigned field (control byte 0x{control:02x})", field, start)
        if not 1 <= length <= size:
            self.fail(f"control byte 0x{control:02x} declares {length} bytes; a {size}-byte integer takes 1 to {size}",
                      field, start)
        value = int.from_bytes(self.take(length, field), "little")
        bound = 2 ** (8 * size - 1) if signed else 2 ** (8 * size)
        if value > bound or (value == bound and not (signed and negative)):
            self.fail(f"value {'-' if negative else ''}{value} does not fit a {size}-byte integer", field, start)
        return -value if negative else value

    def int32(self, field: str) -> int:
        return self.integer(field, 4, signed=True)

    def long(self, field: str) -> int:
        return self.integer(field, 8, signed=True)

    def ulong(self, field: str) -> int:
        return self.integer(field, 8, signed=False)

    def size(self, field: str) -> int:
        value = self.long(field)
        if value < 0:
            self.fail(f"negative size {value}", field)
        return value

    def boolean(self, field: str) -> bool:
        start = self.pos
        byte = self.take(1, field)[0]
        if byte not in (ord("0"), ord("1")):
            self.fail(f"byte 0x{byte:02x} is not a dlib bool ('0' or '1')", field, start)
        return byte == ord("1")

    def real(self, field: str) -> float:
        """A float or double in dlib's portable float_details encoding."""
        start = self.pos
        if self.remaining and self.data[self.pos] & 0x70:
            self.fail("dlib's old ASCII float encoding is not supported", field, start)
        mantissa = self.integer(f"{field} (mantissa)", 8, signed=True)
        exponent = self.integer(f"{field} (exponent)", 2, signed=True)
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        if exponent > _FLOAT_NAN:
            self.fail(f"exponent {exponent} is neither a power of two nor one of dlib's special values", field, start)
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            self.fail(f"mantissa {mantissa} * 2**{exponent} overflows a double", field, start)

    def string(self, field: str) -> str:
        start = self.pos
        length = self.ulong(f"{field} (length)")
        if length > MAX_STRING_BYTES:
            self.fail(f"declares a {length}-byte string; dlib's version strings are short (not a dlib network file?)",
                      field, start)
        raw = bytes(self.take(length, field))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            self.fail(f"string {raw!r} is not ASCII", field, start)

    def version(self, field: str, accepted: tuple[str, ...]) -> str:
        start = self.pos
        value = self.string(field)
        if value not in accepted:
            self.fail(f"unknown version {value!r}; expected {' or '.join(map(repr, accepted))} (wrong network type?)",
                      field, start)
        return value

    def tensor(self, field: str) -> np.ndarray:
        """A ``resizable_tensor``: (num_samples, k, nr, nc) float32."""
        start = self.pos
        version = self.int32(f"{field} (version)")
        if version != 2:
            self.fail(f"tensor version {version}; only version 2 (raw float32, dlib 19.x and later) is supported",
                      field, start)
        shape = tuple(self.size(f"{field} ({name})") for name in ("num_samples", "k", "nr", "nc"))
        count = math.prod(shape)
        if 4 * count > self.remaining:
            self.fail(f"declares {'x'.join(map(str, shape))} floats ({4 * count} bytes) but only {self.remaining} "
                      f"bytes remain (truncated or corrupted file?)", field, start)
        values = np.frombuffer(self.take(4 * count, field), dtype="<f4").astype(np.float32).reshape(shape)
        if not np.isfinite(values).all():
            self.fail(f"{int((~np.isfinite(values)).sum())} non-finite values (corrupted file?)", field, start)
        return values

    def alias_tensor(self, field: str) -> tuple[int, int, int, int]:
        start = self.pos
        version = self.int32(f"{field} (version)")
        if version != 1:
            self.fail(f"alias_tensor version {version}; expected 1", field, start)
        n, k, nr, nc = (self.size(f"{field} ({name})") for name in ("num_samples", "k", "nr", "nc"))
        return n, k, nr, nc

    def expect(self, condition: bool, message: str, field: str, offset: int) -> None:
        if not condition:
            self.fail(message, field, offset)


# ----------------------------------------------------------------------------------- layer details readers


def _default_padding(kernel: int, stride: int) -> int:
    """dlib's template default: ``_stride != 1 ? 0 : _nr/2``."""
    return 0 if stride != 1 else kernel // 2


def _read_con(s: _Stream, spec: Spec, where: str) -> Conv:
    start = s.pos
    version = s.version(f"{where} version", ("con_4", "con_5", "con_6"))
    params = s.tensor(f"{where} params")
    num_filters = s.long(f"{where} num_filters")
    nr, nc = s.long(f"{where} nr"), s.long(f"{where} nc")
    stride = (s.int32(f"{where} stride_y"), s.int32(f"{where} stride_x"))
    padding = (s.int32(f"{where} padding_y"), s.int32(f"{where} padding_x"))
    filters = s.alias_tensor(f"{where} filters")
    biases = s.alias_tensor(f"{where} biases")
    for name in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
                 "bias_weight_decay_multiplier"):
        s.real(f"{where} {name}")
    use_bias = s.boolean(f"{where} use_bias") if version in ("con_5", "con_6") else True
    use_relu = s.boolean(f"{where} use_relu") if version == "con_6" else False
    want_filters, want_nr, want_nc, want_sy, want_sx = spec.args
    field = f"{where} hyperparameters"
    s.expect((num_filters, nr, nc, *stride) == spec.args,
             f"file has num_filters={num_filters} nr={nr} nc={nc} stride={stride}; the network type wants "
             f"{want_filters}, {want_nr}, {want_nc}, ({want_sy}, {want_sx})", field, start)
    want_padding = (_default_padding(nr, stride[0]), _default_padding(nc, stride[1]))
    s.expect(padding == want_padding, f"padding {padding}; dlib's default for this layer is {want_padding}", field, start)
    s.expect(filters[0] == num_filters and filters[1] > 0 and filters[2:] == (nr, nc),
             f"filters alias tensor {filters} does not match {num_filters} filters of {nr}x{nc}", f"{where} filters",
             start)
    weights = math.prod(filters)
    if use_bias:
        s.expect(biases == (1, num_filters, 1, 1), f"biases alias tensor {biases}; expected (1, {num_filters}, 1, 1)",
                 f"{where} biases", start)
    s.expect(params.size == weights + (num_filters if use_bias else 0),
             f"params hold {params.size} floats; {filters} filters{' + biases' if use_bias else ''} need "
             f"{weights + (num_filters if use_bias else 0)}", f"{where} params", start)
    flat = params.reshape(-1)
    return Conv(start, num_filters, (nr, nc), stride, padding, flat[:weights].reshape(filters).copy(),
                flat[weights:].copy() if use_bias else None, use_relu)


def _read_affine(s: _Stream, spec: Spec, where: str) -> Affine:
    start = s.pos
    version = s.string(f"{where} version")
    if version in ("bn_con2", "bn_fc2"):
        s.fail(f"a batch-norm layer ({version!r}) where the network type has affine_; dlib converts it when it "
               f"loads, this reader does not", f"{where} version", start)
    if version not in ("affine_", "affine_2"):
        s.fail(f"unknown version {version!r}; expected 'affine_' or 'affine_2' (wrong network type?)",
               f"{where} version", start)
    params = s.tensor(f"{where} params")
    gamma = s.alias_tensor(f"{where} gamma")
    beta = s.alias_tensor(f"{where} beta")
    mode = s.int32(f"{where} mode")
    disabled = s.boolean(f"{where} disabled") if version == "affine_2" else False
    s.expect(mode in (_CONV_MODE, _FC_MODE), f"layer mode {mode}; dlib knows 0 (conv) and 1 (fc)", f"{where} mode", start)
    if disabled:
        return Affine(start, None, None)
    s.expect(gamma == beta and gamma[0] == 1 and (mode == _FC_MODE or gamma[2:] == (1, 1)),
             f"gamma {gamma} and beta {beta} alias tensors do not fit a {'conv' if mode == _CONV_MODE else 'fc'}-mode "
             f"affine layer", f"{where} gamma", start)
    count = math.prod(gamma)
    s.expect(params.size == 2 * count, f"params hold {params.size} floats; gamma and beta need {2 * count}",
             f"{where} params", start)
    flat = params.reshape(-1)
    return Affine(start, flat[:count].reshape(gamma[1:]).copy(), flat[count:].reshape(gamma[1:]).copy())


def _read_pool(s: _Stream, spec: Spec, where: str) -> Pool:
    start = s.pos
    kind = spec.kind.split("_")[0]
    s.version(f"{where} version", (f"{kind}_pool_2",))
    nr, nc = s.long(f"{where} nr"), s.long(f"{where} nc")
    stride = (s.int32(f"{where} stride_y"), s.int32(f"{where} stride_x"))
    padding = (s.int32(f"{where} padding_y"), s.int32(f"{where} padding_x"))
    s.expect((nr, nc, *stride) == spec.args, f"file has nr={nr} nc={nc} stride={stride}; the network type wants "
             f"{spec.args}", f"{where} hyperparameters", start)
    want_padding = (_default_padding(nr, stride[0]), _default_padding(nc, stride[1]))
    s.expect(padding == want_padding, f"padding {padding}; dlib's default for this layer is {want_padding}",
             f"{where} hyperparameters", start)
    return Pool(start, kind, (nr, nc), stride, padding)


def _read_fc(s: _Stream, spec: Spec, where: str) -> FullyConnected:
    start = s.pos
    version = s.version(f"{where} version", ("fc_2", "fc_3"))
    num_outputs = s.ulong(f"{where} num_outputs")
    num_inputs = s.ulong(f"{where} num_inputs")
    params = s.tensor(f"{where} params")
    weights = s.alias_tensor(f"{where} weights")
    biases = s.alias_tensor(f"{where} biases")
    bias_mode = s.int32(f"{where} bias_mode")
    for name in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
                 "bias_weight_decay_multiplier"):
        s.real(f"{where} {name}")
    use_bias = s.boolean(f"{where} use_bias") if version == "fc_3" else True
    want_mode = _FC_NO_BIAS if spec.kind == "fc_no_bias" else _FC_HAS_BIAS
    s.expect(bias_mode == want_mode, f"bias mode {bias_mode}; {spec.kind} has {want_mode}", f"{where} bias_mode", start)
    s.expect(num_outputs == spec.args[0], f"{num_outputs} outputs; the network type wants {spec.args[0]}",
             f"{where} num_outputs", start)
    s.expect(num_inputs > 0 and weights == (num_inputs, num_outputs, 1, 1),
             f"weights alias tensor {weights} does not match {num_inputs} inputs x {num_outputs} outputs",
             f"{where} weights", start)
    has_bias = want_mode == _FC_HAS_BIAS and use_bias
    if has_bias:
        s.expect(biases == (1, num_outputs, 1, 1), f"biases alias tensor {biases}", f"{where} biases", start)
    need = num_inputs * num_outputs + (num_outputs if has_bias else 0)
    s.expect(params.size == need, f"params hold {params.size} floats; need {need}", f"{where} params", start)
    flat = params.reshape(-1)
    weight = flat[:num_inputs * num_outputs].reshape(num_inputs, num_outputs).copy()
    return FullyConnected(start, num_outputs, num_inputs, weight,
                          flat[num_inputs * num_outputs:].copy() if has_bias else None)


def _read_details(s: _Stream, spec: Spec, where: str) -> Layer:
    start = s.pos
    if spec.kind == "con":
        return _read_con(s, spec, where)
    if spec.kind == "affine":
        return _read_affine(s, spec, where)
    if spec.kind in ("max_pool", "avg_pool"):
        return _read_pool(s, spec, where)
    if spec.kind in ("fc", "fc_no_bias"):
        return _read_fc(s, spec, where)
    if spec.kind == "relu":
        s.version(f"{where} version", ("relu_",))
        return Relu(start)
    if spec.kind == "add_prev":
        s.version(f"{where} version", ("add_prev_",))
        return AddPrev(start, spec.args[0])
    raise ValueError(f"the network type has a layer kind this reader does not know: {spec.label}")


def _read_input(s: _Stream, spec: Spec, where: str) -> InputRGB:
    start = s.pos
    s.version(f"{where} version", ("input_rgb_image_sized",))
    mean = tuple(s.real(f"{where} avg_{colour}") for colour in ("red", "green", "blue"))
    size = (s.ulong(f"{where} nr"), s.ulong(f"{where} nc"))
    s.expect(size == spec.args, f"input size {size}; the network type wants {spec.args}", f"{where} size", start)
    s.expect(all(math.isfinite(value) and 0.0 <= value <= 255.0 for value in mean),
             f"channel means {mean} are not 8-bit pixel values", f"{where} avg", start)
    return InputRGB(start, mean, size)  # type: ignore[arg-type]


def _read_loss(s: _Stream, spec: Spec, where: str) -> LossMetric:
    start = s.pos
    version = s.version(f"{where} version", ("loss_metric_", "loss_metric_2"))
    if version == "loss_metric_":  # the values dlib hard-coded before it stored them
        return LossMetric(start, 0.1, 0.75)
    return LossMetric(start, s.real(f"{where} margin"), s.real(f"{where} dist_thresh"))


def _skip_layer_state(s: _Stream, where: str, tensors: tuple[str, ...]) -> None:
    """The bools and cached tensors ``add_layer`` writes after its details (training state, not needed)."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        s.boolean(f"{where} {name}")
    for name in tensors:
        s.tensor(f"{where} {name}")


# ------------------------------------------------------------------------------------------------ reading


def _check_spec(spec: tuple[Spec, ...]) -> None:
    if len(spec) < 3 or spec[0].kind != "loss_metric" or spec[-1].kind != "input_rgb_image_sized":
        raise ValueError("a network type runs from a loss_metric to an input_rgb_image_sized layer")
    if spec[-2].kind in ("tag", "skip"):
        raise ValueError("this reader needs a computational layer directly on the input layer")


def read_dlib_net(data: bytes, spec: tuple[Spec, ...], source: str = "<bytes>") -> DlibNet:
    """Parse a whole serialised dlib network of type ``spec`` (top to bottom); raises ``DlibFormatError``."""
    _check_spec(spec)
    s = _Stream(data, source)
    where = [f"layer<{index}> {item.label}" for index, item in enumerate(spec)]
    version = s.int32(f"{where[0]} add_loss_layer version")
    s.expect(version == 1, f"add_loss_layer version {version}; expected 1 (not a dlib network file?)",
             f"{where[0]} add_loss_layer version", 0)
    loss = _read_loss(s, spec[0], where[0])

    bottom = len(spec) - 2  # the add_layer that sits on the input layer
    versions: dict[int, int] = {}
    for index in range(1, bottom + 1):  # each layer's version, top-down, before anything else
        start = s.pos
        kind = spec[index].kind
        wrapper = "add_tag_layer" if kind == "tag" else "add_skip_layer" if kind == "skip" else "add_layer"
        field = f"{where[index]} {wrapper} version"
        versions[index] = s.int32(field)
        accepted = (1,) if kind in ("tag", "skip") else (2, 3) if index == bottom else (1, 2)
        s.expect(versions[index] in accepted, f"{wrapper} version {versions[index]}; expected {accepted} here "
                 f"(a file of another network type?)", field, start)

    network_input = _read_input(s, spec[-1], where[-1])
    layers: list[Layer] = [_read_details(s, spec[bottom], where[bottom])]
    _skip_layer_state(s, where[bottom], ("x_grad", "cached_output", "grad_final"))
    if versions[bottom] == 3:
        s.integer(f"{where[bottom]} sample_expansion_factor", 4, signed=False)

    for index in range(bottom - 1, 0, -1):  # then each layer's details, bottom-up
        item = spec[index]
        if item.kind == "tag":
            layers.append(Tag(s.pos, item.args[0]))
        elif item.kind == "skip":
            layers.append(Skip(s.pos, item.args[0]))
        else:
            layers.append(_read_details(s, item, where[index]))
            cached = ("x_grad", "cached_output", "params_grad") if versions[index] == 2 else ("x_grad", "cached_output")
            _skip_layer_state(s, where[index], cached)
    if s.remaining:
        s.fail(f"{s.remaining} bytes remain after the whole network was read (a different network type?)",
               "end of file")
    return DlibNet(loss, network_input, tuple(layers), s.pos, source)
