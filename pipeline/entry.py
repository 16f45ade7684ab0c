"""The one command line of every stage flow: ``--params`` (plus a stage's own options), run, print a summary."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def stage_arguments(description: str, sections: str, argv: list[str] | None = None,
                    add_options: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """Parse a stage's command line: ``--params`` (default params.yaml; ``sections`` names the ones it reads)
    and whatever ``add_options`` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help=f"params file (sections {sections})")
    if add_options is not None:
        add_options(parser)
    return parser.parse_args(argv)
