"""Remediator: runs the runbook's first response to Prometheus Alertmanager alerts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("remediator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
