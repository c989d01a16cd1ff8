"""Names on the bus: the events stream and its subjects, the command queue.

Events go to ``<prefix>.<category>.<type>`` in the stream ``<PREFIX>_EVENTS``
(subjects ``<prefix>.>``); queued commands to ``<prefix>-commands.<name>`` in
the work-queue stream ``<PREFIX>_COMMANDS``. Subject tokens are sanitized:
any character other than ASCII letters, digits, ``_`` and ``-`` becomes
``_``, so a category or type can never add a token or a wildcard. Subjects
are for routing and filtering; the message body carries the exact names."""

from __future__ import annotations

import re

import msgspec

from eventfold.errors import ConfigurationError
from eventfold.messaging.api import StreamSpec
from eventfold.store.checks import category_of

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def token(text: str) -> str:
    """``text`` as one safe subject token (never empty)."""
    return _UNSAFE.sub("_", text) or "_"


class Topology(msgspec.Struct, frozen=True):
    """Where an application's events and commands live on the bus.

    ``replicas``: copies a clustered JetStream keeps of each stream (3 in a
    three-node cluster). ``duplicate_window``: seconds the bus remembers
    message ids (a re-publish within it is dropped)."""

    prefix: str = "eventfold"
    replicas: int = 1
    duplicate_window: float = 120.0

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix) or len(self.prefix) > 64:
            raise ConfigurationError(
                f"bus prefix {self.prefix!r}: dot-separated tokens of letters, digits, "
                "'_' and '-', at most 64 characters",
                setting="prefix",
            )
        if self.replicas not in (1, 2, 3, 4, 5):
            raise ConfigurationError("replicas must be between 1 and 5", setting="replicas")
        if self.duplicate_window <= 0:
            raise ConfigurationError("duplicate_window must be positive", setting="duplicate")

    @property
    def _name(self) -> str:
        return token(self.prefix.replace(".", "_")).upper()

    # --- events -------------------------------------------------------------------------

    @property
    def events_stream(self) -> str:
        return f"{self._name}_EVENTS"

    def events_spec(self) -> StreamSpec:
        """File-backed, kept for ever, message ids remembered for the window."""
        return StreamSpec(
            name=self.events_stream,
            subjects=(f"{self.prefix}.>",),
            replicas=self.replicas,
            duplicate_window=self.duplicate_window,
        )

    def event_subject(self, stream_id: str, event_type: str) -> str:
        return f"{self.prefix}.{token(category_of(stream_id))}.{token(event_type)}"

    # --- commands -----------------------------------------------------------------------

    @property
    def commands_stream(self) -> str:
        return f"{self._name}_COMMANDS"

    def commands_spec(self) -> StreamSpec:
        """A work queue: each command is removed once a worker acknowledged it."""
        return StreamSpec(
            name=self.commands_stream,
            subjects=(f"{self.prefix}-commands.>",),
            work_queue=True,
            replicas=self.replicas,
            duplicate_window=self.duplicate_window,
        )

    def command_subject(self, name: str) -> str:
        return f"{self.prefix}-commands.{token(name)}"
