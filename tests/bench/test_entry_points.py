"""The user commands: each console entry point of pyproject.toml names a `main(argv=None) -> int` of the
package, and the scripts the Makefile runs reach the same commands through the installed package."""
from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

from support import REPO_ROOT, runs

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

# script -> the entry point that runs the same main
SCRIPTS = {"benchmark": "involution-benchmark", "train": "involution-train", "test": "involution-test",
           "convert_checkpoint": "involution-convert", "get_flops": "involution-flops",
           "make_toy_data": "involution-toy-data"}


def _entry_points() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def test_every_entry_point_is_a_main_of_the_package(openmmlab, capsys):
    entry_points = _entry_points()
    assert set(SCRIPTS.values()) <= set(entry_points)
    problems = []
    for command, target in entry_points.items():
        try:
            main = _resolve(target)
        except (ImportError, AttributeError) as error:
            problems.append(f"{command} = {target}: {error}")
            continue
        parameters = inspect.signature(main).parameters
        if list(parameters) != ["argv"] or parameters["argv"].default is not None:
            problems.append(f"{command} = {target}: takes {list(parameters)}, not argv=None")
            continue
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        if exit_.value.code != 0 or not capsys.readouterr().out.startswith("usage:"):
            problems.append(f"{command} = {target}: --help exits {exit_.value.code} without a usage")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_the_entry_points_main(script, openmmlab):
    """The script is a wrapper around the entry point's main, imported from the installed package."""
    source = (REPO_ROOT / "scripts" / f"{script}.py").read_text()
    target = _entry_points()[SCRIPTS[script]]
    module, _, name = target.partition(":")
    assert f"from {module} import {name}" in source
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / f"{script}.py"), "--help"],
                            env=runs.checkout_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
