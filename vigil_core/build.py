"""`vigil_build_info{version}`: which Vigil a process runs, in every service's metrics (Prometheus convention: an
info gauge of value 1)."""

from __future__ import annotations

from typing import Any

__all__ = ["vigil_version", "register_build_info"]


def vigil_version() -> str:
    """The installed package's version ("unknown" in a source tree never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vigil")
    except PackageNotFoundError:
        return "unknown"


def register_build_info(registry: Any) -> None:
    """Add `vigil_build_info{version, python}` = 1 to a prometheus_client registry."""
    import platform

    from prometheus_client import Gauge

    Gauge("vigil_build_info", "the Vigil version this process runs (value 1)", ["version", "python"],
          registry=registry).labels(vigil_version(), platform.python_version()).set(1)
