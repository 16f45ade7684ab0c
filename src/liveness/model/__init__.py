"""The patent's networks, losses and score, in pure torch (DESIGN §1).

Map from the patent's claims (as DESIGN §1 reads them) to the code:

======  ==========================================================  ==============================================
Claim   What it claims                                              Code
======  ==========================================================  ==============================================
1       Live-only training of an encode / separate / decode /       ``generator.Generator`` (forward), trained by
        re-encode network; spoof decided from its latent gap        ``liveness.train.step.TrainingStep``
2       First encoder E1: 9 conv3x3 + ReLU, 2 stride-2 poolings,    ``encoder.Encoder`` (``Generator.encoder``),
        256-ch latent whole feature at H/4                          widths in ``profiles.PROFILES["patent"]``
3       Separation module: halve the channels; 1x1 conv -> z_face,  ``encoder.SeparationModule``
        3x3 conv -> z_bg (64 ch each)
4       Face and background decoders: same structure, separate      ``decoder.Decoder`` (``Generator.face_decoder``,
        weights; 9 conv3x3 + ReLU, 2 x2 upsamplings                 ``Generator.background_decoder``)
5       Feature reconstruction (conv, conv, Tanh on the deep face)  ``decoder.ClearFaceHead``;
        -> clear face I_c; recombination (concat, conv, conv,       ``decoder.RecombinationHead``
        Tanh) -> reconstructed normal image I_real
6       Second encoder E2, same structure and its own separation    ``encoder.Encoder`` (``Generator.re_encoder``)
        module, re-encodes I_real into z_face', z_bg'
7       Pretrained face-recognition network f, last FC removed,     ``identity.IdentityNetwork``,
        frozen (step S105)                                          ``identity.build_identity_network``
8       Losses: pixel, adversarial (with discriminator D),          ``losses`` (one function per term),
        identity, latent consistency; G and D alternate; Adam       ``discriminator.Discriminator``,
                                                                    ``liveness.train.step.TrainingStep``
9       Inference: Δ = d(z_bg, z_bg') against a threshold           ``score.latent_background_score``,
                                                                    ``score.score_images``; ``score_components``
                                                                    names it ``latent_bg``
======  ==========================================================  ==============================================

Beyond the claims (DESIGN §1.4, issue "scoring that works"): ``score.score_components`` also computes
``latent_bg_cos``, ``latent_bg_std``, ``latent_face``, ``pixel``, ``pixel_hf`` and ``fused``; calibration
reports all of them and may ship another one, chosen on calibration data only. ``losses.latent_consistency_loss``
has the claimed form plus two scale-collapse remedies (``loss.latent_mode``). ``layers.he_init`` initialises the
plain ReLU stacks so they train at all.

Claim 7's f, offline: ``dlib_resnet.DlibResNet`` is dlib's pretrained face-recognition ResNet rebuilt in torch
from the file ``dlib_format`` reads (``identity.backbone: dlib_resnet``, the default).

Deviations we chose, with reasons, are in the docstrings of ``discriminator`` (strides + global pooling)
and ``losses`` (non-saturating G loss).
"""

from importlib import import_module

# Imported on first use (PEP 562), so that ``liveness.model.profiles``, a torch-free table, loads without torch:
# liveness.config reads the profile names from it.
_EXPORTS = {
    "Discriminator": "liveness.model.discriminator",
    "Encoder": "liveness.model.encoder",
    "LatentCodes": "liveness.model.encoder",
    "SeparationModule": "liveness.model.encoder",
    "Generator": "liveness.model.generator",
    "GeneratorOutput": "liveness.model.generator",
    "PROFILES": "liveness.model.profiles",
    "WidthProfile": "liveness.model.profiles",
    "get_profile": "liveness.model.profiles",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'liveness.model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
