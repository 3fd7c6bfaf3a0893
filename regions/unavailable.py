"""When a region's store cannot serve: the error the API answers 503 with, which failures are
the store's rather than the work's, and the one retry a killed connection deserves."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

P = ParamSpec("P")
T = TypeVar("T")


class StoreUnavailable(Exception):
    """A region's store could not be reached, or kept a request waiting past its timeout.

    `disconnected`: the connection died under the transaction (the server rolled it back, or
    committed it if it died during COMMIT), and a fresh one may well work.
    """

    def __init__(self, region: str, reason: str, *, disconnected: bool = False) -> None:
        super().__init__(f"the {region} store is unavailable: {reason}")
        self.region = region
        self.disconnected = disconnected


def retried_once_if_disconnected(call: Callable[P, T]) -> Callable[P, T]:
    """Runs `call` again, once, when its connection died under it.

    pool_pre_ping tests a connection only as it leaves the pool; one killed afterwards (a
    backend terminated, a failover) fails the transaction it was in, which the server rolled
    back, so a second try on a fresh connection is the answer the caller wanted. Only calls
    that are right to run twice may use this: a connection that died during COMMIT leaves it
    unknown whether the first try committed. A second failure is the store being down.
    """

    @functools.wraps(call)
    def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(*args, **kwargs)
        except StoreUnavailable as unavailable:
            if not unavailable.disconnected:
                raise
        return call(*args, **kwargs)

    return retried


def store_failure(error: BaseException) -> bool:
    """The store failed under the work (unreachable, its connection lost, a wait past the
    timeout), rather than the work itself: no fault of the data being written."""
    return isinstance(error, OperationalError | InterfaceError | PoolTimeout) or _disconnected(
        error
    )


def unavailable(region: str, error: BaseException) -> StoreUnavailable:
    """What a store failure is reported as: the driver's own words, first line only (no SQL,
    no parameters)."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    lines = str(cause).strip().splitlines()
    said = lines[0] if lines else type(cause).__name__
    return StoreUnavailable(region, said, disconnected=_disconnected(error))


def _disconnected(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and error.connection_invalidated
