"""Vigil's pipeline: event contracts, Kafka I/O, the scorer, replay and the `vigil` CLI."""

from pipeline.errors import (
    BrokerUnavailable,
    ConfigError,
    ContractError,
    ModelError,
    StoreUnavailable,
    VigilError,
)
from pipeline.settings import Settings, load_settings

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "ContractError",
    "ModelError",
    "Settings",
    "StoreUnavailable",
    "VigilError",
    "load_settings",
]
