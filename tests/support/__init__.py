"""Helpers shared by the test modules (on the path through pytest's `pythonpath`)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout under test: scripts/, configs, results/
