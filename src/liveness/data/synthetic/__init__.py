"""SYNTHETIC demo data: procedural faces, simulated presentation attacks, and writers for real layouts.

Nothing here depicts a real person; everything written is marked ``SYNTHETIC`` (see ``writer``).
"""

from liveness.data.synthetic.attacks import (
    ATTACKS,
    simulate_cut_photo,
    simulate_mask_face,
    simulate_print,
    simulate_replay,
)
from liveness.data.synthetic.faces import (
    IdentityTraits,
    Scene,
    compose_scene,
    face_box,
    identity_traits,
    render_background,
    render_face,
)
from liveness.data.synthetic.writer import generate_demo_dataset, read_marker

__all__ = [
    "ATTACKS",
    "IdentityTraits",
    "Scene",
    "compose_scene",
    "face_box",
    "generate_demo_dataset",
    "identity_traits",
    "read_marker",
    "render_background",
    "render_face",
    "simulate_cut_photo",
    "simulate_mask_face",
    "simulate_print",
    "simulate_replay",
]
