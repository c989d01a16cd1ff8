"""What every part of the conformance suite shares: the fixtures that open
the store under test, the check that a backend runs a mixin for exactly the
capabilities it declares, and small helpers for events and reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec
import pytest

from eventfold.store.api import NewEvent, RecordedEvent
from eventfold.store.url import connect

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


def new_event(type: str = "Happened", **data: Any) -> NewEvent:
    return NewEvent(type=type, data=msgspec.json.encode(data or {"n": 0}))


def numbered(n: int, type: str = "Happened", start: int = 0) -> list[NewEvent]:
    return [new_event(type, n=start + i) for i in range(n)]


async def collect(it: AsyncIterator[T]) -> list[T]:
    return [item async for item in it]


def numbers(records: list[RecordedEvent]) -> list[int]:
    return [msgspec.json.decode(r.data)["n"] for r in records]


class Opening(Generic[S]):
    """What ``open_store()`` returns: ``await`` it for an open store, or
    ``async with`` it to have the store closed afterwards (as
    ``eventfold.connect`` does). ``Opening(make)`` wraps any coroutine
    function that opens one, e.g. to wrap a backend in a ``DelegatingStore``."""

    def __init__(self, make: Callable[[], Awaitable[S]]) -> None:
        self._make = make
        self._opened: S | None = None

    def __await__(self) -> Generator[Any, None, S]:
        return self._make().__await__()

    async def __aenter__(self) -> S:
        self._opened = await self._make()
        return self._opened

    async def __aexit__(self, *exc: object) -> None:
        if self._opened is not None:
            await self._opened.close()


class Conformance:
    """Fixtures of every part of the suite, and the capability check.

    Provide a ``store_url`` fixture naming a fresh, empty store for each test
    (and optionally ``store_options``), or override ``open_store`` to open
    the store under test some other way (see ``Opening``).
    """

    capability: ClassVar[type | None] = None
    """Set by each capability mixin to the Protocol it checks."""

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def open_store(self, store_url: str, store_options: dict[str, Any]) -> Any:
        def opener() -> Any:
            return connect(store_url, **store_options)

        return opener

    async def test_declared_capabilities_match_the_mixins(self, open_store: Any) -> None:
        """A backend declares exactly the capabilities whose mixins its test
        class runs, and implements each one it declares."""
        mixins = {
            kind for cls in type(self).__mro__ if (kind := vars(cls).get("capability")) is not None
        }
        async with open_store() as store:
            declared = set(store.capabilities)
            assert declared == mixins, (
                f"declared {sorted(c.__name__ for c in declared)}, "
                f"the test class runs {sorted(c.__name__ for c in mixins)}"
            )
            for kind in declared:
                assert isinstance(store, kind), f"declares {kind.__name__} but lacks its methods"
