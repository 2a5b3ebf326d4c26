"""Sliding-window rate limits: per client IP per minute, per API key per hour, and a burst cap.

Windows are kept in memory (one process); the clock is injectable so tests need not sleep.
A deployment with several replicas puts a shared limiter (e.g. at the ingress) in front.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ai_med_extract.config import RateLimitSettings


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0
    scope: str = ""


class _Window:
    __slots__ = ("limit", "span", "hits")

    def __init__(self, limit: int, span: float):
        self.limit = limit
        self.span = span
        self.hits: deque[float] = deque()

    def check(self, now: float) -> float:
        """0 when a hit is allowed now, else seconds until one is."""
        while self.hits and self.hits[0] <= now - self.span:
            self.hits.popleft()
        if len(self.hits) < self.limit:
            return 0.0
        return self.hits[0] + self.span - now


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def _window(self, scope: str, ident: str, limit: int, span: float) -> _Window:
        key = (scope, ident)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) > 100_000:
                self._prune()
            window = self._windows[key] = _Window(limit, span)
        return window

    def _prune(self) -> None:
        now = self.clock()
        for key, window in list(self._windows.items()):
            if not window.hits or window.hits[-1] <= now - window.span:
                del self._windows[key]

    def hit(self, ip: str, key_id: int | None) -> Decision:
        """Count one request if every applicable window has room; otherwise count nothing."""
        if not self.settings.enabled:
            return Decision(True)
        now = self.clock()
        windows = [
            ("burst", self._window("burst", ip, self.settings.burst, 1.0)),
            ("ip", self._window("ip", ip, self.settings.per_ip_per_minute, 60.0)),
        ]
        if key_id is not None:
            windows.append(("key", self._window("key", str(key_id), self.settings.per_key_per_hour, 3600.0)))
        for scope, window in windows:
            wait = window.check(now)
            if wait > 0:
                return Decision(False, retry_after=max(1, math.ceil(wait)), scope=scope)
        for _, window in windows:
            window.hits.append(now)
        return Decision(True)
