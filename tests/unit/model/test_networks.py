import pytest
import torch
from torch import nn

from liveness.model.discriminator import Discriminator
from liveness.model.generator import Generator
from liveness.model.profiles import PROFILES, POOL, UPSAMPLE, WidthProfile, get_profile

PATENT = PROFILES["patent"]


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


class TestGeneratorShapes:
    @pytest.mark.parametrize("size", [64, 112, 128])
    def test_patent_profile_shapes(self, size):
        torch.manual_seed(0)
        generator = Generator(PATENT).eval()
        image = torch.rand(2, 3, size, size) * 2 - 1
        with torch.no_grad():
            whole = generator.encoder.features(image)
            out = generator(image)
        assert whole.shape == (2, 256, size // 4, size // 4)
        for code in (*out.codes, *out.recodes):
            assert code.shape == (2, 64, size // 4, size // 4)
        assert out.clear_face.shape == out.reconstruction.shape == (2, 3, size, size)
        assert out.reconstruction.abs().max() <= 1.0 and out.clear_face.abs().max() <= 1.0

    @pytest.mark.parametrize("size", [64, 112, 128])
    def test_discriminator_gives_two_logits(self, size):
        logits = Discriminator(PATENT)(torch.zeros(3, 3, size, size))
        assert logits.shape == (3, 2)

    def test_clear_face_can_be_skipped(self):
        out = Generator(PROFILES["tiny"])(torch.zeros(1, 3, 32, 32), with_clear_face=False)
        assert out.clear_face is None and out.reconstruction.shape == (1, 3, 32, 32)

    def test_decoder_width_is_configurable(self):
        generator = Generator(get_profile("tiny", decoder_channels=32))
        assert generator.face_decoder.out_channels == 32
        assert generator.clear_face_head.layers[0].in_channels == 32
        assert generator.recombination_head.layers[0].in_channels == 64


class TestPatentStructure:
    """Each part has the topology of claims 2-6 and DESIGN §1.1."""

    def test_encoder_has_nine_3x3_convs_and_two_poolings(self):
        encoder = Generator(PATENT).encoder
        convs = _convs(encoder.features)
        pools = [m for m in encoder.features if isinstance(m, nn.MaxPool2d)]
        relus = [m for m in encoder.features if isinstance(m, nn.ReLU)]
        assert len(convs) == 9 and len(relus) == 9 and len(pools) == 2
        assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
        assert [c.out_channels for c in convs] == [64, 64, 128, 128, 128, 256, 256, 256, 256]
        assert all(p.stride == 2 for p in pools)

    def test_separation_module_kernel_sizes(self):
        separation = Generator(PATENT).encoder.separation
        assert separation.face_head.kernel_size == (1, 1) and separation.face_head.in_channels == 128
        assert separation.background_head.kernel_size == (3, 3) and separation.background_head.in_channels == 128
        assert separation.face_head.out_channels == separation.background_head.out_channels == 64

    def test_separation_splits_channels_in_half(self):
        separation = Generator(PROFILES["tiny"]).encoder.separation
        whole = torch.randn(1, 32, 4, 4)
        face_only = whole.clone()
        face_only[:, 16:] = 0
        # z_face depends only on the first half of the channels
        assert torch.allclose(separation(whole).face, separation(face_only).face)
        assert not torch.allclose(separation(whole).background, separation(face_only).background)

    def test_decoders_have_nine_convs_and_two_upsamplings(self):
        generator = Generator(PATENT)
        for decoder in (generator.face_decoder, generator.background_decoder):
            layers = list(decoder.layers)
            assert len(_convs(decoder)) == 9
            assert sum(isinstance(m, nn.Upsample) for m in layers) == 2
            assert sum(isinstance(m, nn.ReLU) for m in layers) == 9
        assert generator.face_decoder is not generator.background_decoder

    def test_heads_end_in_tanh(self):
        generator = Generator(PATENT)
        for head in (generator.clear_face_head, generator.recombination_head):
            assert len(_convs(head)) == 2 and isinstance(head.layers[-1], nn.Tanh)

    def test_second_encoder_has_same_structure_and_separate_weights(self):
        generator = Generator(PATENT)
        first, second = generator.encoder, generator.re_encoder
        assert [tuple(p.shape) for p in first.parameters()] == [tuple(p.shape) for p in second.parameters()]
        assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first.parameters(), second.parameters()))

    def test_discriminator_has_six_convs_and_fc(self):
        discriminator = Discriminator(PATENT)
        assert len(_convs(discriminator)) == 6
        assert isinstance(discriminator.classifier, nn.Linear) and discriminator.classifier.out_features == 2
        probability = discriminator.probability_real(torch.zeros(2, 3, 32, 32))
        assert probability.shape == (2,) and torch.all((probability > 0) & (probability < 1))

    def test_generator_has_no_batch_coupled_layers(self):
        batch_norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)
        assert not any(isinstance(m, batch_norms) for m in Generator(PATENT).modules())


class TestProfiles:
    def test_wrong_conv_count_is_rejected(self):
        with pytest.raises(ValueError, match="9 positive conv widths"):
            WidthProfile("bad", (8, POOL, 8, POOL, 8), 4, PATENT.decoder, 8, PATENT.discriminator)

    def test_odd_encoder_output_is_rejected(self):
        encoder = (8, 8, POOL, 8, 8, 8, POOL, 8, 8, 8, 7)
        with pytest.raises(ValueError, match="even"):
            WidthProfile("bad", encoder, 4, PATENT.decoder, 8, PATENT.discriminator)

    def test_decoder_must_end_with_conv(self):
        decoder = (8, 8, 8, 8, UPSAMPLE, 8, 8, 8, 8, 8, UPSAMPLE)
        with pytest.raises(ValueError, match="end with a conv"):
            WidthProfile("bad", PATENT.encoder, 4, decoder, 8, PATENT.discriminator)

    def test_unknown_profile_name(self):
        with pytest.raises(KeyError, match="unknown width profile"):
            get_profile("nope")


class TestHeInit:
    """The plain ReLU stacks must pass a signal through at init, or L_pix barely moves (see layers.he_init)."""

    def test_signal_keeps_its_scale_through_a_nine_conv_stack(self):
        from liveness.model.layers import conv_relu_stack
        from liveness.model.profiles import PROFILES

        torch.manual_seed(0)
        stack, _ = conv_relu_stack(3, PROFILES["small"].encoder)
        image = torch.randn(4, 3, 32, 32)
        with torch.no_grad():
            out = stack(image)
        # PyTorch's default init leaves about 1e-3 of the input's scale after 9 ReLU layers
        ratio = out.pow(2).mean().sqrt() / image.pow(2).mean().sqrt()
        assert 0.2 < ratio < 5, ratio

    def test_biases_start_at_zero(self):
        from liveness.model.generator import Generator
        from liveness.model.profiles import PROFILES

        generator = Generator(PROFILES["tiny"])
        first = generator.encoder.features[0]
        assert torch.count_nonzero(first.bias) == 0
