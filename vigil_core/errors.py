"""Vigil's exception hierarchy: one root, and a type for each failure a caller can act on."""

from __future__ import annotations

__all__ = [
    "VigilError",
    "ConfigError",
    "ContractError",
    "BrokerUnavailable",
    "StoreUnavailable",
]


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class ConfigError(VigilError, ValueError):
    """A setting is missing or invalid; `variable` names the environment variable to fix."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class ContractError(VigilError, ValueError):
    """A message does not satisfy its contract; `field` and `problem` become the DLQ reason."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    @property
    def reason(self) -> str:
        """The one-line reason written to the dead-letter topic."""
        return f"{self.field}: {self.problem}"


class BrokerUnavailable(VigilError, ConnectionError):
    """The Kafka cluster could not be reached or did not acknowledge in time."""


class StoreUnavailable(VigilError, ConnectionError):
    """Redis could not be reached; safety decisions must then fail closed."""
