"""Our reader of dlib's serialised networks: the real file parses completely; damaged files fail clearly."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveness.model.dlib_format import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    FullyConnected,
    Pool,
    Relu,
    Skip,
    Spec,
    Tag,
    read_dlib_net,
)
from liveness.model.dlib_resnet import ANET_TYPE
from tests.fixtures.dlib import WEIGHTS, needs_dlib_weights

pytestmark = needs_dlib_weights


@pytest.fixture(scope="module")
def raw() -> bytes:
    return WEIGHTS.read_bytes()


@pytest.fixture(scope="module")
def net(raw):
    return read_dlib_net(raw, ANET_TYPE, source="dlib.dat")


def _read(data: bytes):
    return read_dlib_net(data, ANET_TYPE, source="damaged.dat")


class TestRealFile:
    def test_every_byte_is_consumed(self, net, raw):
        assert net.size == len(raw) == 22_466_066

    def test_layer_sequence_is_anet_type(self, net):
        kinds = {Conv: "con", Affine: "affine", Relu: "relu", Pool: "pool", AddPrev: "add_prev", Tag: "tag",
                 Skip: "skip", FullyConnected: "fc_no_bias"}
        expected = [spec.kind.replace("max_pool", "pool").replace("avg_pool", "pool") for spec in ANET_TYPE[-2:0:-1]]
        assert [kinds[type(layer)] for layer in net.layers] == expected
        assert len(ANET_TYPE) == 132  # dlib's anet_type::num_layers
        assert Counter(type(layer).__name__ for layer in net.layers) == {
            "Conv": 29, "Affine": 29, "Relu": 29, "Tag": 18, "AddPrev": 14, "Pool": 6, "Skip": 4, "FullyConnected": 1}

    def test_stem_and_head(self, net):
        stem = net.layers[0]
        assert isinstance(stem, Conv) and stem.weight.shape == (32, 3, 7, 7)
        assert stem.stride == (2, 2) and stem.padding == (0, 0) and stem.bias.shape == (32,)
        assert net.layers[3] == Pool(net.layers[3].offset, "max", (3, 3), (2, 2), (0, 0))
        fc = net.layers[-1]
        assert isinstance(fc, FullyConnected) and fc.weight.shape == (256, 128) and fc.bias is None

    def test_padding_is_dlibs_default(self, net):
        for layer in net.layers:
            if isinstance(layer, Conv):
                assert layer.padding == ((0, 0) if layer.stride == (2, 2) else (1, 1)) or layer.kernel == (7, 7)

    def test_input_and_loss(self, net):
        np.testing.assert_allclose(net.input.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
        assert net.input.size == (150, 150)
        assert net.loss.distance_threshold == pytest.approx(0.6) and net.loss.margin == pytest.approx(0.04)

    def test_weights_are_finite_and_not_trivial(self, net):
        convs = [layer for layer in net.layers if isinstance(layer, Conv)]
        assert all(np.isfinite(c.weight).all() and c.weight.std() > 1e-4 for c in convs)


class TestDamagedFiles:
    @pytest.mark.parametrize("keep", [0, 1, 5, 300, 20_000, 22_466_065])
    def test_truncated_file_names_offset_and_field(self, raw, keep):
        with pytest.raises(DlibFormatError) as caught:
            _read(raw[:keep])
        error = caught.value
        assert error.offset <= keep and "damaged.dat" in str(error) and f"at byte {error.offset}" in str(error)
        assert "truncated" in str(error) or "ends" in str(error)

    def test_truncated_weights_name_the_layer(self, raw):
        with pytest.raises(DlibFormatError, match=r"layer<\d+> con<32,7,7,2,2> params"):
            _read(raw[:10_000])

    def test_trailing_bytes_are_refused(self, raw):
        with pytest.raises(DlibFormatError, match="remain after the whole network") as caught:
            _read(raw + b"\x00")
        assert caught.value.offset == len(raw)

    def test_unknown_layer_version(self, raw):
        damaged = raw.replace(b"relu_", b"relv_", 1)
        with pytest.raises(DlibFormatError, match="unknown version 'relv_'") as caught:
            _read(damaged)
        assert caught.value.offset == raw.index(b"relu_") - 2  # the string's length byte pair

    def test_wrong_net_type(self):
        face_detector = WEIGHTS.parent / "mmod_human_face_detector.dat"  # dlib's CNN face detector: loss_mmod
        with pytest.raises(DlibFormatError, match="loss_mmod") as caught:
            _read(face_detector.read_bytes())
        assert caught.value.field.startswith("layer<0> loss_metric")

    def test_not_a_network_at_all(self):
        landmarks = WEIGHTS.parent / "shape_predictor_5_face_landmarks.dat"
        with pytest.raises(DlibFormatError):
            _read(landmarks.read_bytes()[:4096])

    def test_other_hyperparameters_are_refused(self, raw):
        spec = list(ANET_TYPE)
        spec[-2] = Spec("con", (32, 5, 5, 2, 2))  # the stem is 7x7, not 5x5
        with pytest.raises(DlibFormatError, match="nr=7 nc=7"):
            read_dlib_net(raw, tuple(spec))

    def test_giant_declared_tensor_fails_before_allocating(self, raw, net):
        start = net.layers[0].offset + 7  # after the con_4 version string: the params tensor
        assert raw[start:start + 5] == b"\x01\x02\x02\x80\x12"  # version 2, num_samples 4736
        damaged = raw[:start + 2] + b"\x08" + b"\xff" * 7 + b"\x7f" + raw[start + 5:]
        with pytest.raises(DlibFormatError, match="declares .* floats") as caught:
            _read(damaged)
        assert caught.value.offset == start

    def test_non_finite_weight(self, raw, net):
        start = net.layers[0].offset + 7 + 11  # the first float of the stem's params
        damaged = raw[:start] + np.float32(np.nan).tobytes() + raw[start + 4:]
        with pytest.raises(DlibFormatError, match="non-finite"):
            _read(damaged)


def _structural_offsets(net, size: int) -> list[int]:
    """Bytes that carry structure rather than weights: the header, each layer's start, the end."""
    offsets = set(range(0, 320)) | set(range(size - 400, size))
    for layer in net.layers:
        offsets |= set(range(layer.offset, min(size, layer.offset + 48)))
    return sorted(offsets)


@pytest.mark.slow
class TestFuzz:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cut=st.integers(min_value=0, max_value=22_466_065))
    def test_any_truncation_is_a_clear_error(self, raw, cut):
        with pytest.raises(DlibFormatError):
            _read(raw[:cut])

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_bit_flips_give_a_clear_error_or_a_network(self, raw, net, data):
        offsets = _structural_offsets(net, len(raw))
        damaged = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 3), label="flips")):
            offset = data.draw(st.sampled_from(offsets), label="offset")
            damaged[offset] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        try:
            parsed = _read(bytes(damaged))
        except DlibFormatError as error:
            assert 0 <= error.offset <= len(raw) and error.field
        else:  # a flip in a value dlib does not check (a multiplier, a bool, a weight) still parses
            assert len(parsed.layers) == len(net.layers)
