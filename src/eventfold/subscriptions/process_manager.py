"""Process managers (sagas): react to events by issuing commands.

Delivery is at least once (a restart resumes from the checkpoint, a crash can
deliver an event again), so every command is sent with an idempotency key
derived from the triggering event's id and a step name: handled again, it
writes nothing and returns the first outcome. Together they make each command
take effect once, however often the event is delivered."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Literal, TypeVar

from eventfold.domain.events import Envelope, Metadata
from eventfold.errors import DuplicateEventId, RegistrationError
from eventfold.observability import tracing
from eventfold.observability.logs import logged
from eventfold.repository import Handled, Repository
from eventfold.serialization.codec import Codec, RawEvent
from eventfold.store.api import EventReader
from eventfold.store.routing import Route
from eventfold.subscriptions.checkpoints import CheckpointStore
from eventfold.subscriptions.lanes import Key
from eventfold.subscriptions.retry import RetryPolicy
from eventfold.subscriptions.sqltemplate import check_name
from eventfold.subscriptions.subscription import Subscription

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")
Step = Callable[["ProcessContext", Envelope[Any]], Awaitable[None]]
F = TypeVar("F", bound=Step)


class ProcessContext:
    """What a process manager's handler gets beside the event: ``handle`` to
    issue a command idempotently, keyed by this event and a step name."""

    def __init__(self, manager: ProcessManager, envelope: Envelope[Any]) -> None:
        self.manager = manager
        self.envelope = envelope

    def key(self, step: str) -> str:
        """The idempotency key of ``step`` for this event: stable across deliveries."""
        return step_key(self.manager.name, self.envelope.event_id, step)

    def metadata(self) -> Metadata:
        """Metadata for a command caused by this event: its id as causation
        id, its correlation id carried on (or its id if it has none)."""
        env = self.envelope
        caused_by = str(env.event_id)
        return Metadata(
            correlation_id=env.metadata.correlation_id or caused_by,
            causation_id=caused_by,
            actor=self.manager.name,
        )

    async def handle(
        self,
        repository: Repository[C, E, S],
        stream_id: str,
        command: C,
        *,
        step: str,
        metadata: Metadata | None = None,
    ) -> Handled[E] | None:
        """``repository.handle`` with the idempotency key of ``step``. If that
        step already took effect (even with events a changed state would no
        longer produce), nothing is written; returns None in that last case.
        ``CommandRejected`` from the decider propagates: catch it to branch.

        The step runs in a span continuing the trace of the event (its
        metadata's trace context), so the events it appends carry that trace on."""
        env = self.envelope
        metadata = metadata if metadata is not None else self.metadata()
        attributes = {
            "eventfold.process_manager": self.manager.name,
            "eventfold.step": step,
            "eventfold.stream_id": stream_id,
            "eventfold.cause.event_id": str(env.event_id),
            "eventfold.cause.event.type": env.type,
        }
        trace = {k: v for k, v in env.metadata.extra.items() if k in tracing.TRACE_KEYS}
        with (
            tracing.continued(trace),
            tracing.span(f"saga {self.manager.name} {step}", attributes=attributes),
            logged(correlation_id=metadata.correlation_id, causation_id=metadata.causation_id),
        ):
            try:
                return await repository.handle(
                    stream_id, command, metadata=metadata, idempotency_key=self.key(step)
                )
            except DuplicateEventId:
                # The ids derived from this key are stored already: the step ran.
                return None


class ProcessManager:
    """``checkout = ProcessManager("checkout", categories=["order"])`` then
    ``@checkout.on(OrderSubmitted) async def _(ctx, envelope): ...``.
    ``subscribe(store, codec, checkpoints)`` gives the ``Subscription`` that
    runs it; the checkpoint moves after each event.

    ``key(envelope)`` names what must be handled in order (default: the
    event's stream); with ``subscribe(..., lanes=8)`` events of different
    keys are handled concurrently, those of one key one after another (a
    transfer saga keys its events by transfer id, so that each transfer's
    steps run in order while many transfers progress at once). Events the
    manager has no step for are keyed by their stream."""

    def __init__(
        self, name: str, *, categories: Sequence[str] | None = None, key: Key | None = None
    ) -> None:
        self.name = check_name(name, "process manager name")
        self.categories = list(categories) if categories is not None else None
        self._key = key
        self._steps: dict[type[Any], Step] = {}

    def on(self, *event_types: type[Any]) -> Callable[[F], F]:
        if not event_types:
            raise RegistrationError(f"{self.name}: on() needs at least one event type")

        def decorate(fn: F) -> F:
            for cls in event_types:
                if cls in self._steps:
                    raise RegistrationError(f"{self.name}: {cls.__qualname__} already handled")
                self._steps[cls] = fn
            return fn

        return decorate

    @property
    def event_types(self) -> list[type[Any]]:
        return list(self._steps)

    def key(self, envelope: Envelope[Any]) -> Hashable:
        """The key ordering ``envelope`` among the manager's events."""
        if self._key is None or type(envelope.event) not in self._steps:
            return envelope.stream_id
        return self._key(envelope)

    async def handle(self, envelope: Envelope[Any]) -> None:
        """React to one event (events it has no handler for are ignored)."""
        if isinstance(envelope.event, RawEvent):
            return
        step = self._steps.get(type(envelope.event))
        if step is not None:
            await step(ProcessContext(self, envelope), envelope)

    def subscribe(
        self,
        store: EventReader,
        codec: Codec,
        checkpoints: CheckpointStore,
        *,
        batch_size: int = 100,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        start_at: Literal["beginning", "end"] = "beginning",
        lanes: int = 1,
        route: Route = "replica",
    ) -> Subscription:
        """The subscription that runs this manager; ``lanes`` above 1 handles
        events of different keys concurrently, and ``route`` picks the
        servers it reads (see ``Subscription``)."""
        for cls in self._steps:
            codec.registry.of_class(cls)  # raises UnknownEventType if unregistered
        return Subscription(
            store,
            codec,
            f"process:{self.name}",
            self.handle,
            checkpoints=checkpoints,
            categories=self.categories,
            batch_size=batch_size,
            retry=retry,
            poll_interval=poll_interval,
            checkpoint_every_event=True,
            start_at=start_at,
            lanes=lanes,
            key=self.key,
            route=route,
        )


def step_key(manager: str, event_id: uuid.UUID, step: str) -> str:
    """The idempotency key a process manager named ``manager`` uses for ``step``."""
    return f"{manager}:{event_id}:{step}"
