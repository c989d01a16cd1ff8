"""How often, and after how long, a failing handler is tried again."""

from __future__ import annotations

import msgspec

from eventfold.errors import InvalidArgument


class RetryPolicy(msgspec.Struct, frozen=True):
    """``attempts`` tries in all for one event (1: no retry), waiting
    ``backoff * multiplier ** (n - 1)`` seconds (at most ``max_backoff``) before
    the n-th retry. Only exceptions of the ``retry_on`` classes are retried;
    anything else stops the subscription at once."""

    attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 10.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidArgument("RetryPolicy.attempts must be an int >= 1", argument="attempts")
        if self.attempts < 1:
            raise InvalidArgument("RetryPolicy.attempts must be an int >= 1", argument="attempts")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise InvalidArgument(
                "RetryPolicy: backoff and max_backoff must be >= 0, multiplier >= 1",
                argument="backoff",
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure of one event."""
        return float(min(self.max_backoff, self.backoff * self.multiplier ** max(failures - 1, 0)))

    def should_retry(self, exc: BaseException, failures: int) -> bool:
        return failures < self.attempts and isinstance(exc, self.retry_on)


NO_RETRY = RetryPolicy(attempts=1, backoff=0.0)
