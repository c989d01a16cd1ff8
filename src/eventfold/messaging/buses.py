"""Opening a bus by URL, from the one registry of bus schemes
(``register_bus`` adds to it)."""

from __future__ import annotations

from collections.abc import Callable

from eventfold.messaging.api import Bus
from eventfold.messaging.memory import InProcessBus
from eventfold.urls import SchemeRegistry

BusOpener = Callable[[str], Bus]
"""``opener(url)`` returns the (unconnected) bus at ``url``."""

_buses: SchemeRegistry[BusOpener] = SchemeRegistry("bus", "nats")


def register_bus(scheme: str, opener: BusOpener) -> None:
    """Make ``open_bus`` open URLs of ``scheme`` with ``opener(url)``."""
    _buses.register(scheme, opener)


def open_bus(url: str | None) -> Bus:
    """``None`` or ``memory://``: an ``InProcessBus``; ``nats://host:port``
    (comma-separated for a cluster): a ``JetStreamBus``; or a scheme added
    with ``register_bus``."""
    if url is None:
        return InProcessBus()
    return _buses.entry(url)(url)


def _open_in_process(url: str) -> Bus:
    return InProcessBus()


def _open_jetstream(url: str) -> Bus:
    from eventfold.messaging.jetstream import JetStreamBus

    return JetStreamBus(url)


register_bus("memory", _open_in_process)
register_bus("nats", _open_jetstream)
register_bus("tls", _open_jetstream)
