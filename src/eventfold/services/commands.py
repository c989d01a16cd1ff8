"""The command side: typed commands (msgspec Structs) routed to deciders,
handled through a ``Repository`` (load, decide, append), with idempotency
keys whose first outcome is kept and returned again.

``Commands`` declares what an application accepts (no I/O, so it can
describe itself, e.g. as OpenAPI); ``CommandBus`` runs them on a store.

Idempotency: a command sent with a key is handled with
``Repository.handle(idempotency_key=key)``, so its events get ids derived
from the stream and the key and a second landing writes nothing; its outcome
is stored by key (``OutcomeStore``), and a retry with the same key returns
that first outcome without deciding again. If the process died between the
append and storing the outcome, the retry finds the events by their derived
ids and reports the version and position they landed at."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from eventfold.domain.clocks import check_not_ahead
from eventfold.domain.decider import Decider
from eventfold.domain.events import Metadata
from eventfold.errors import (
    CommandRejected,
    ConcurrencyError,
    DuplicateEventId,
    InvalidArgument,
    RegistrationError,
    StoreError,
    WrongExpectedVersion,
)
from eventfold.errors import IdempotencyKeyReused as IdempotencyKeyReused
from eventfold.errors import InvalidCommand as InvalidCommand
from eventfold.errors import UnknownCommand as UnknownCommand
from eventfold.repository import Repository, SnapshotPolicy, derived_event_id
from eventfold.serialization.codec import Codec
from eventfold.services.outcomes import OutcomeStore
from eventfold.services.records import (
    CommandError,
    CommandOutcome,
    ErrorDetail,
    Status,
    StoredOutcome,
)
from eventfold.store.api import EventStore
from eventfold.store.checks import NOT_JSON, validate_expected, validate_stream_id
from eventfold.store.payloads import MAX_JSON_DEPTH, error_path, too_deep

C = TypeVar("C")

MAX_KEY_LENGTH = 200
RECOVERY_SCAN = 10_000
"""How many of a stream's latest events are searched for a keyed command's
events when it is retried after its outcome was lost."""


class CommandRoute(Generic[C]):
    """One registered command: its type, the decider that handles it, how to
    find its stream, and how to turn it into the decider's command."""

    def __init__(
        self,
        name: str,
        command_type: type[C],
        decider: Decider[Any, Any, Any],
        stream: Callable[[C], str],
        translate: Callable[[C], Any] | None,
        validate: Callable[[C], None] | None,
        snapshots: SnapshotPolicy | None,
        description: str,
    ) -> None:
        self.name = name
        self.command_type = command_type
        self.decider = decider
        self.stream = stream
        self.translate = translate
        self.validate = validate
        self.snapshots = snapshots
        self.description = description
        self.decoder: msgspec.json.Decoder[C] = msgspec.json.Decoder(command_type)

    def decode(self, body: bytes) -> C:
        """The command from its JSON, decoded strictly with its own type: no
        ``"10"``, ``"1e1"`` or ``10.0`` for an int, no unknown field where the
        type forbids them. Raises InvalidCommand (``malformed`` for bytes that
        are not JSON, or JSON nested past MAX_JSON_DEPTH)."""
        if too_deep(body):
            raise InvalidCommand(
                self.name,
                f"malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels",
                malformed=True,
            )
        try:
            return self.decoder.decode(body)
        except msgspec.ValidationError as exc:
            path = error_path(exc)
            field = path.lstrip(".") if path else None
            raise InvalidCommand(self.name, str(exc), field=field) from None
        except NOT_JSON as exc:
            raise InvalidCommand(self.name, f"malformed JSON: {exc}", malformed=True) from None

    def schema(self) -> dict[str, Any]:
        return msgspec.json.schema(self.command_type)


class Commands:
    """The commands an application accepts::

        commands = Commands(codec)
        commands.register(PlaceOrder, orders, stream=lambda c: c.order_id)
        commands.register(AddLineTo, orders, stream=lambda c: c.order_id,
                          translate=lambda c: AddLine(c.sku, c.quantity, c.price))

    ``stream`` names the stream a command goes to; ``translate`` turns the
    command as sent into the decider's command (by default it is the same);
    ``validate`` raises ``InvalidArgument`` for a command that must be refused
    before anything is loaded or written."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._routes: dict[str, CommandRoute[Any]] = {}

    def register(
        self,
        command_type: type[C],
        decider: Decider[Any, Any, Any],
        *,
        stream: Callable[[C], str],
        translate: Callable[[C], Any] | None = None,
        validate: Callable[[C], None] | None = None,
        name: str | None = None,
        snapshots: SnapshotPolicy | None = None,
        description: str = "",
    ) -> None:
        name = name or command_type.__name__
        if not name.isidentifier():
            raise RegistrationError(f"command name {name!r} must be an identifier")
        if name in self._routes:
            raise RegistrationError(f"command {name!r} is already registered")
        if not (isinstance(command_type, type) and issubclass(command_type, msgspec.Struct)):
            raise RegistrationError(f"command {name!r}: {command_type!r} is not a msgspec Struct")
        doc = description or (command_type.__doc__ or "").strip()
        self._routes[name] = CommandRoute(
            name, command_type, decider, stream, translate, validate, snapshots, doc
        )

    def get(self, name: str) -> CommandRoute[Any]:
        route = self._routes.get(name)
        if route is None:
            raise UnknownCommand(name, self.names)
        return route

    @property
    def names(self) -> list[str]:
        return sorted(self._routes)

    def __iter__(self) -> Iterator[CommandRoute[Any]]:
        return iter(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes)


class Prepared(msgspec.Struct, frozen=True):
    """A decoded, validated command, ready to run or to queue."""

    name: str
    stream_id: str
    body: bytes
    fingerprint: str
    idempotency_key: str | None = None
    expected_version: int | None = None
    metadata: Metadata | None = None


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def new_command_id() -> str:
    return str(uuid.uuid4())


def _fingerprint(name: str, stream_id: str, body: bytes, expected: int | None) -> str:
    digest = hashlib.sha256()
    for part in (name, stream_id, str(expected)):
        digest.update(part.encode())
        digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidArgument(
            f"an idempotency key is 1-{MAX_KEY_LENGTH} printable characters",
            argument="idempotency_key",
        )
    return key


def _error(exc: BaseException, **detail: Any) -> CommandError:
    return CommandError(type(exc).__name__, str(exc), ErrorDetail(**detail))


class CommandBus:
    """Runs ``commands`` against ``store``; ``outcomes`` keeps the outcome
    of every command sent with an idempotency key (and of queued ones)."""

    def __init__(
        self,
        commands: Commands,
        store: EventStore,
        outcomes: OutcomeStore,
        *,
        max_retries: int = 3,
    ) -> None:
        self.commands = commands
        self.store = store
        self.outcomes = outcomes
        self._repositories: dict[tuple[int, int], Repository[Any, Any, Any]] = {}
        self._max_retries = max_retries

    def _repository(self, route: CommandRoute[Any]) -> Repository[Any, Any, Any]:
        key = (id(route.decider), id(route.snapshots))
        repo = self._repositories.get(key)
        if repo is None:
            repo = self._repositories[key] = Repository(
                self.store,
                route.decider,
                self.commands.codec,
                snapshots=route.snapshots,
                max_retries=self._max_retries,
            )
        return repo

    def prepare(
        self,
        name: str,
        command: bytes | object,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        metadata: Metadata | None = None,
    ) -> Prepared:
        """Decode (from JSON bytes) or take a command, check it and find its
        stream. Raises ``UnknownCommand``, ``InvalidCommand`` or
        ``InvalidArgument``: nothing is read or written."""
        route = self.commands.get(name)
        if isinstance(command, bytes | bytearray | memoryview):
            typed = route.decode(bytes(command))
        elif isinstance(command, route.command_type):
            typed = command
        else:
            raise InvalidCommand(name, f"expected a {route.command_type.__name__}")
        check_key(idempotency_key)
        if expected_version is not None:
            validate_expected(expected_version)
        if metadata is not None and metadata.occurred_at is not None:
            check_not_ahead(metadata.occurred_at)
        try:
            if route.validate is not None:
                route.validate(typed)
            if route.translate is not None:
                route.translate(typed)
            stream_id = route.stream(typed)
            validate_stream_id(stream_id)
        except InvalidArgument as exc:
            raise InvalidCommand(name, str(exc)) from None
        body = msgspec.json.encode(typed)
        return Prepared(
            name=name,
            stream_id=stream_id,
            body=body,
            fingerprint=_fingerprint(name, stream_id, body, expected_version),
            idempotency_key=idempotency_key,
            expected_version=expected_version,
            metadata=metadata,
        )

    async def execute(self, prepared: Prepared) -> CommandOutcome:
        """Handle a command now. With an idempotency key, the first outcome
        stored for that key is returned (and nothing is decided again)."""
        key = prepared.idempotency_key
        if key is not None:
            existing = await self.outcomes.by_key(key)
            if existing is not None:
                if existing.fingerprint and existing.fingerprint != prepared.fingerprint:
                    raise IdempotencyKeyReused(key, existing.outcome.command)
                return existing.outcome
        outcome = await self.run(prepared, new_command_id(), key=key)
        if key is None or outcome.status == "failed":
            return outcome
        stored = await self.outcomes.add(StoredOutcome(outcome, prepared.fingerprint))
        if stored.fingerprint and stored.fingerprint != prepared.fingerprint:
            raise IdempotencyKeyReused(key, stored.outcome.command)
        return stored.outcome

    async def run(self, prepared: Prepared, command_id: str, *, key: str | None) -> CommandOutcome:
        """Decide and append, with ``key`` as the repository's idempotency
        key; the outcome (typed errors included). Store and bus failures
        raise: the command may be tried again."""
        route = self.commands.get(prepared.name)
        typed = route.decode(prepared.body)
        domain = route.translate(typed) if route.translate is not None else typed
        given = prepared.metadata or Metadata()
        metadata = Metadata(
            correlation_id=given.correlation_id or command_id,
            causation_id=given.causation_id or command_id,
            actor=given.actor,
            extra={**given.extra, "command": route.name, "command_id": command_id},
            occurred_at=given.occurred_at,
        )
        base = CommandOutcome(
            command_id=command_id,
            command=route.name,
            status="pending",
            stream_id=prepared.stream_id,
            idempotency_key=prepared.idempotency_key,
            accepted_at=now_text(),
        )
        stream_id = prepared.stream_id
        recover = False
        try:
            handled = await self._repository(route).handle(
                stream_id,
                domain,
                metadata=metadata,
                expected_version=prepared.expected_version,
                idempotency_key=key,
            )
        except CommandRejected as exc:
            outcome = self._done(base, "rejected", error=_error(exc, stream_id=stream_id))
            recover = True
        except WrongExpectedVersion as exc:
            # Commands expect exact versions (the loaded one, or the header's).
            expected = exc.expected if isinstance(exc.expected, int) else None
            error = _error(exc, stream_id=exc.stream_id, expected=expected, actual=exc.actual)
            outcome = self._done(base, "conflict", error=error)
            recover = True
        except ConcurrencyError as exc:
            outcome = self._done(base, "conflict", error=_error(exc, stream_id=stream_id))
        except DuplicateEventId as exc:
            outcome = self._done(base, "conflict", error=_error(exc, stream_id=stream_id))
            recover = True
        except InvalidArgument as exc:
            outcome = self._done(base, "invalid", error=_error(exc, argument=exc.argument))
        except (StoreError, OSError):
            raise
        except Exception as exc:
            outcome = self._done(base, "failed", error=_error(exc))
        else:
            outcome = self._done(
                base,
                "succeeded",
                version=handled.version,
                position=handled.position,
                events=[
                    self.commands.codec.registry.of_class(type(e)).name for e in handled.events
                ],
            )
            recover = not handled.events
        if recover and key is not None:
            found = await self._landed(stream_id, key)
            if found is not None:
                version, position, types = found
                outcome = self._done(
                    base, "succeeded", version=version, position=position, events=types
                )
        return outcome

    @staticmethod
    def _done(base: CommandOutcome, status: Status, **fields: Any) -> CommandOutcome:
        return msgspec.structs.replace(base, status=status, completed_at=now_text(), **fields)

    async def _landed(self, stream_id: str, key: str) -> tuple[int, int, list[str]] | None:
        """Where the events derived from ``key`` landed, if they did: the
        version and position of the last of them, and their types."""
        first = derived_event_id(stream_id, key, 0)
        seen = []
        async for record in self.store.read_stream(stream_id, backwards=True, limit=RECOVERY_SCAN):
            seen.append(record)
            if record.event_id == first:
                break
        else:
            return None
        seen.reverse()
        landed = []
        for index, record in enumerate(seen):
            if record.event_id != derived_event_id(stream_id, key, index):
                break
            landed.append(record)
        last = landed[-1]
        return last.version, last.position, [r.type for r in landed]
