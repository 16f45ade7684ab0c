"""One-class silent face liveness detection, trained on live faces only.

See ``liveness.model`` for the map from the patent's claims to the code.
"""

__version__ = "0.1.0"
