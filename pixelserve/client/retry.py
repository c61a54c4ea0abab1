"""When to send a request again: only for answers that say "not now" (a full queue, a model loading, a server
draining or unreachable), after at least the wait the server asked for, and a bounded number of times.

Every task call is stateless on the server, so sending one again cannot do anything twice. The backoff has
jitter so clients refused together do not come back together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import PixelServeError


@dataclass(frozen=True)
class Retry:
    """`retries` more attempts at most; the wait doubles from `backoff_s` up to `max_backoff_s` (each drawn
    from its upper half), and is never shorter than the server's Retry-After / grpc-retry-pushback-ms (up to
    `max_wait_s` of it), drawn from up to a quarter above it."""

    retries: int = 4
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    max_wait_s: float = 60.0

    def delay(self, attempt: int, error: PixelServeError) -> float | None:
        """Seconds to wait before attempt `attempt + 1` (0 is the first retry), or None to give up."""
        if not error.retryable or attempt >= self.retries:
            return None
        backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        asked = min(error.retry_after or 0.0, self.max_wait_s)
        if asked <= backoff:
            return backoff
        # Everyone refused together is told the same wait: spread the returns over a quarter of it more.
        return asked * random.uniform(1.0, 1.25)


NO_RETRY = Retry(retries=0)
