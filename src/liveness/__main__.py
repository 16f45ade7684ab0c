"""Allows ``python -m liveness`` (and ``torchrun -m liveness``)."""

from liveness.cli import app

if __name__ == "__main__":
    app()
