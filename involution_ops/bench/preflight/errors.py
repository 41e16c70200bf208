"""The pre-flight's one error type."""
from __future__ import annotations


class PreflightError(RuntimeError):
    """A problem found before any training starts; the message names the path and the fix.

    The other input errors are kinds of it: `weight_checks.WeightsError` (a weights file),
    `config_checks.ConfigOptionError` (a CFG_OPTIONS key) and `runconfig.RunConfigError` (a config
    that cannot be built as asked), so one ``except PreflightError`` reports them all."""
