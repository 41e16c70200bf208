"""The Makefile's suite targets and setup stamp, read with `make -n` (nothing runs): one target per
group of the manifest and one per suite, each the benchmark command of its group; setup runs only
when its stamp is missing or stale."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no `make` on PATH")

SETUP = "scripts/setup_env.sh"


def _make(*args: str) -> str:
    # as a user's own make: without the variables of a make this test may run under (`make test
    # PYTEST_ARGS=...` puts PYTEST_ARGS into its recipes' environment too, as TEST_WORKERS)
    inherited = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTEST_ARGS", "TEST_WORKERS")
    env = {name: value for name, value in os.environ.items() if name not in inherited}
    result = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), *args],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    return result.stdout


@pytest.fixture
def venv(tmp_path) -> Path:
    """A stand-in environment whose setup stamp is current for the Makefile's default variables."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".involution_ops-setup").write_text("0123456789abcdef-torch==2.13.0--mm,test,cuda12\n")
    return venv


def _targets(manifest) -> dict[str, tuple[str, str]]:
    """make target -> (suite, group) as the README names them: coco-faster-rcnn, ..., coco."""
    targets = {}
    for suite in manifest.suites:
        if manifest.groups(suite):
            targets.update({f"{suite}-{group.replace('_', '-')}": (suite, group) for group in manifest.groups(suite)})
            targets[suite] = (suite, "all")
    return targets


def test_every_group_of_the_manifest_has_its_target(manifest, venv):
    targets = _targets(manifest)
    # the names users type today, as the README and the issue list them
    assert set(targets) == {"coco-retinanet", "coco-faster-rcnn", "coco-mask-rcnn", "coco",
                            "cityscapes-fpn", "cityscapes-upernet", "cityscapes"}
    for target, (suite, group) in targets.items():
        dry = _make("-n", target, f"VENV={venv}", "GPUS=2", "DATA=/datasets/x")
        lines = dry.splitlines()
        assert lines[0].rstrip() == f"{venv}/bin/python scripts/benchmark.py {suite} {group} --data '/datasets/x' --gpus 2"
        assert "scripts/make_tables.py" in dry  # then the tables
        assert SETUP not in dry  # current stamp: no setup, in this make or in its recursive `make tables`


def test_help_lists_each_suite_target_with_its_models(manifest):
    listed = {}
    for line in _make("help").splitlines():
        match = re.match(r"\s*\x1b\[1m(\S+)\s*\x1b\[0m (.*)", line)
        assert match, line
        listed[match[1]] = match[2]
    for target, (suite, group) in _targets(manifest).items():
        count = len(manifest.target_models(suite, group))
        assert f" {count} {suite} model" in listed[target], (target, listed[target])
    assert {"setup", "test", "test-fast", "flops", "tables"} <= set(listed)


def test_setup_runs_only_when_its_stamp_is_stale(venv):
    stamp = venv / ".involution_ops-setup"
    assert SETUP not in _make("-n", "test", f"VENV={venv}")
    # another torch, or a setup for other extras: the stamp says what it was made for
    assert _make("-n", "test", f"VENV={venv}", "TORCH_SPEC=torch==2.5.1").count(SETUP) == 1
    assert _make("-n", "test", f"VENV={venv}", "EXTRAS=mm,test").count(SETUP) == 1
    # `make setup` always asks setup_env.sh (which checks the stamp's content itself)
    assert _make("-n", "setup", f"VENV={venv}").count(SETUP) == 1
    stamp.unlink()
    assert _make("-n", "test", f"VENV={venv}").count(SETUP) == 1


def test_fast_loop_deselects_the_slow_tests_and_uses_every_core(venv):
    assert _make("-n", "test-fast", f"VENV={venv}").strip() == f'{venv}/bin/python -m pytest -m "not slow" -n auto'
    assert _make("-n", "test-fast", f"VENV={venv}", "TEST_WORKERS=0").strip().endswith('-m "not slow" -n 0')
    assert _make("-n", "test", f"VENV={venv}").strip() == f"{venv}/bin/python -m pytest"
