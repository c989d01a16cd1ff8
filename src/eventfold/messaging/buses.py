"""Opening a bus by URL, from the one registry of bus schemes
(``register_bus`` adds to it)."""

from __future__ import annotations

from typing import Protocol

from eventfold.messaging.api import Bus
from eventfold.messaging.memory import InProcessBus
from eventfold.urls import SchemeRegistry


class BusOpener(Protocol):
    """``opener(url, user=, password=, token=)`` returns the (unconnected) bus
    at ``url``, logging in with the credentials given (None: none)."""

    def __call__(
        self, url: str, *, user: str | None, password: str | None, token: str | None
    ) -> Bus: ...


_buses: SchemeRegistry[BusOpener] = SchemeRegistry("bus", "nats")


def register_bus(scheme: str, opener: BusOpener) -> None:
    """Make ``open_bus`` open URLs of ``scheme`` with ``opener(url)``."""
    _buses.register(scheme, opener)


def open_bus(
    url: str | None,
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
) -> Bus:
    """``None`` or ``memory://``: an ``InProcessBus``; ``nats://host:port``
    (comma-separated for a cluster): a ``JetStreamBus``, logging in with
    ``user``/``password`` or ``token`` when given; or a scheme added with
    ``register_bus``."""
    if url is None:
        return InProcessBus()
    return _buses.entry(url)(url, user=user, password=password, token=token)


def _open_in_process(url: str, *, user: str | None, password: str | None, token: str | None) -> Bus:
    return InProcessBus()


def _open_jetstream(url: str, *, user: str | None, password: str | None, token: str | None) -> Bus:
    from eventfold.messaging.jetstream import JetStreamBus

    return JetStreamBus(url, user=user, password=password, token=token)


register_bus("memory", _open_in_process)
register_bus("nats", _open_jetstream)
register_bus("tls", _open_jetstream)
