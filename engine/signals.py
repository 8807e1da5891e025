"""Pre-emption: SIGTERM / SIGUSR1 turned into a flag the loop polls, so it saves a checkpoint and returns."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """Turns SIGTERM / SIGUSR1 (what SLURM and most schedulers send before pre-emption) into a flag.

    The loop polls ``requested`` at each step boundary, saves a checkpoint and returns, instead of dying mid-step.
    Handlers are installed on ``__enter__`` and the previous ones restored on ``__exit__``; outside the main
    thread (where Python cannot install handlers) it does nothing.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    num = getattr(signal, name)
                    self._previous[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for num, handler in self._previous.items():
            signal.signal(num, handler)
        self._previous.clear()
