"""The `vigil` command: settings, logging, and the handler of the command given (the parser: vigil/parser.py). Each
subcommand imports its heavy modules only when it runs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from vigil.parser import Handler, build_parser
from vigil_core.errors import VigilError
from vigil_core.settings import load_settings, misspelt_variables

__all__ = ["main", "build_parser"]



THIRD_PARTY_LOGGERS = ("kafka", "urllib3", "httpx", "httpcore", "redis", "confluent_kafka", "uvicorn")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vigil` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except VigilError as exc:
        print(f"vigil: configuration error: {exc}", file=sys.stderr)
        return 2
    for name, meant in misspelt_variables():
        print(f"vigil: warning: {name} is not a Vigil setting and is ignored; did you mean {meant}?",
              file=sys.stderr)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Third-party clients log their whole configuration at DEBUG, kafka-python's SASL password included (issue 35):
    # VIGIL_LOG_LEVEL=DEBUG is for Vigil's own modules, never theirs.
    for noisy in THIRD_PARTY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except VigilError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
