"""Where ``Predictor`` lived before the layering refactor (issue 12); it is now ``liveness.bundle.predictor``.

Models registered before then log a ``pyfunc_model.py`` that imports ``liveness.registry.predictor``; this
module keeps them loadable. New code imports ``liveness.bundle``.
"""

from liveness.bundle.predictor import Prediction, Predictor, synthetic_warning

__all__ = ["Prediction", "Predictor", "synthetic_warning"]
