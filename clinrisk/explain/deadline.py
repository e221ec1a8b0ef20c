"""A fixed time budget for one explanation, and running a port call within it.

An adapter's own timeouts (botocore read timeouts, HTTP timeouts) are set from the budget, but a
call is also run on a worker thread and abandoned when the budget runs out: a hung adapter then
costs a thread, not the answer. The caller degrades instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TypeVar

from clinrisk.errors import ClinriskError

T = TypeVar("T")
_WORKERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="clinrisk-explain")


class BudgetExceededError(ClinriskError):
    """A call did not finish within what was left of the explanation's budget."""


@dataclass
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return max(0.0, self.seconds - (self.clock() - self.started))

    def submit(self, call: Callable[[], T]) -> Future[T]:
        return _WORKERS.submit(call)

    def wait(self, future: Future[T], *, what: str) -> T:
        """The call's result, or BudgetExceededError when the budget ends first."""
        try:
            return future.result(timeout=self.remaining())
        except FutureTimeout:
            future.cancel()
            raise BudgetExceededError(f"{what} did not answer within the {self.seconds:g} s budget") from None
