"""One periodic daemon thread: every loop of `incidents` (the evaluator's heartbeat watch, urgent cases, the escalation
timer and scorer watchdog, the notification outbox) shares it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Calls `round_` every `every_s` seconds in a daemon thread until `stop`; a round that raises is logged by its
    exception's type only (no message: it may hold data) and the next round runs, so a Redis or broker blip never
    ends the watch."""

    def __init__(self, name: str, round_: Callable[[], object]) -> None:
        self.name = name
        self._round = round_
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, every_s: float, at_once: bool = False) -> None:
        """Start the thread: a round every `every_s` seconds (the first at once with `at_once`)."""
        def loop() -> None:
            if at_once:
                self._once()
            while not self._stop.wait(every_s):
                self._once()

        self._thread = threading.Thread(target=loop, name=f"vigil-{self.name.replace(' ', '-')}", daemon=True)
        self._thread.start()

    def _once(self) -> None:
        try:
            self._round()
        except Exception as exc:  # noqa: BLE001 - the watch must outlive a Redis or broker blip
            log.warning("%s round failed: %s", self.name, type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
