"""params.yaml sections and the pure dataclasses they configure must not drift apart."""

from dataclasses import asdict

from liveness.config import AugmentParams, QualityParams
from liveness.data.augment import AugmentConfig
from liveness.data.quality import QualityThresholds


def test_quality_defaults_agree():
    assert QualityParams().model_dump() == asdict(QualityThresholds())


def test_augment_defaults_agree():
    assert AugmentParams().model_dump() == asdict(AugmentConfig())
