"""Wiring the services of one application, by role:

- **command**: the event store, the command bus with its outcome store, the
  queue and its workers, the relay publishing the log to the bus, and the
  process managers (sagas);
- **query**: the read-model database holding the mirror and the
  projections, the bus consumer filling the mirror, the projection runner and
  the query service with its cache;
- **all**: both in one process. Without a NATS URL the bus is in-process
  (the embedded default: nothing to install or run); the relay then resumes
  from what the mirror holds, since such a bus keeps nothing across restarts.

Background loops are supervised: a loop that fails is logged and restarted
with a growing delay, except for failures no restart can fix (a bad setting,
a gap in the bus stream), which stay visible in ``/status``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

import msgspec

from eventfold.audit import AuditingStore
from eventfold.errors import ConfigurationError
from eventfold.messaging import BusConsumer, MirrorGap, MirrorStore, Relay, Topology, open_bus
from eventfold.messaging.api import Bus
from eventfold.messaging.mirror import MirrorCheckpoints
from eventfold.security.secrets import hex_key, read_secret
from eventfold.serialization.codec import Codec
from eventfold.serialization.crypto import EncryptingStore
from eventfold.serialization.keys import KeyStore, open_key_store
from eventfold.services.cache import QueryCache
from eventfold.services.commands import CommandBus, Commands
from eventfold.services.observed import forget, instrumented, measure, observe_command, watch
from eventfold.services.operations import Operations
from eventfold.services.outcomes import OutcomeStore, open_outcomes
from eventfold.services.queries import Queries, QueryAnswer, QueryService
from eventfold.services.queue import CommandQueue, CommandWorkers
from eventfold.store.api import EventStore
from eventfold.store.routing import replica_health, route_reads
from eventfold.store.url import connect, database_beside
from eventfold.subscriptions.checkpoints import CheckpointStore
from eventfold.subscriptions.checkpoints_sql import open_checkpoints
from eventfold.subscriptions.process_manager import ProcessManager
from eventfold.subscriptions.projection import Projection, ProjectionSet
from eventfold.subscriptions.readmodel import ReadModel, open_read_model
from eventfold.subscriptions.runner import ProjectionRunner
from eventfold.tenancy.placement import Place, Tenancy

log = logging.getLogger("eventfold.services")

Role = Literal["all", "command", "query"]


class ServiceDefinition:
    """What an application serves: its commands, its projections, its named
    queries and states, and the process managers to run beside the
    commands (``process_managers(store)`` builds them on the running store)."""

    def __init__(
        self,
        codec: Codec,
        *,
        commands: Commands | None = None,
        projections: ProjectionSet | Iterable[Projection] = (),
        queries: Queries | None = None,
        process_managers: Callable[[EventStore], Sequence[ProcessManager]] | None = None,
        title: str = "eventfold",
    ) -> None:
        self.codec = codec
        self.commands = commands if commands is not None else Commands(codec)
        self.projections = (
            projections
            if isinstance(projections, ProjectionSet)
            else ProjectionSet(codec, projections)
        )
        self.queries = queries if queries is not None else Queries()
        self.process_managers = process_managers
        self.title = title


class ServeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to run: which role, which databases, which bus. ``outcomes``
    defaults to a database beside the store (``<store>-services.db`` for
    SQLite, schema ``<schema>_services`` for PostgreSQL).

    Compliance: ``encrypt`` wraps the store in an ``EncryptingStore`` (the
    definition's registry; subject keys in ``keys``, by default the store's
    own database, wrapped by the hex master key read from the file
    ``master_key_file`` or the variable ``master_key_env``: never the key
    itself here); the NATS password or token likewise come from a file or a
    variable (``nats_password_file``, ``nats_token_env`` …); ``audit``
    names metadata every appended event must carry (an ``AuditingStore``).
    ``tenancy``: serve many tenants, each on databases of its own
    (``eventfold.tenancy``)."""

    role: Role = "all"
    store: str = "sqlite:///eventfold.db"
    read_model: str = "sqlite:///eventfold-reads.db"
    outcomes: str | None = None
    nats: str | None = None
    prefix: str = "eventfold"
    replicas: int = 1
    workers: int = 2
    ack_wait: float = 30.0
    consumer: str = "eventfold-mirror"
    cache_ttl: float = 1.0
    max_body_size: int = 1024 * 1024
    max_wait: float = 10.0
    requeue_after: float = 300.0
    poll_interval: float = 0.5
    encrypt: bool = False
    keys: str | None = None
    master_key_env: str | None = "EVENTFOLD_MASTER_KEY"
    master_key_file: str | None = None
    audit: tuple[str, ...] = ()
    tenancy: Tenancy | None = None
    nats_user: str | None = None
    nats_password_env: str | None = "EVENTFOLD_NATS_PASSWORD"
    nats_password_file: str | None = None
    nats_token_env: str | None = "EVENTFOLD_NATS_TOKEN"
    nats_token_file: str | None = None
    tenant: str | None = None
    """The tenant this runtime serves (set by ``for_tenant``; a metrics label)."""

    def __post_init__(self) -> None:
        if self.role not in ("all", "command", "query"):
            raise ConfigurationError(f"role must be all, command or query, not {self.role!r}")
        if self.role != "all" and self.nats is None:
            raise ConfigurationError(
                f"--role {self.role} runs one side of the services in its own process: "
                "the sides then need a NATS URL (--nats) to talk",
                setting="nats",
            )
        if self.encrypt and self.role == "query" and self.keys is None:
            raise ConfigurationError(
                "--role query --encrypt decrypts with the command side's subject keys: "
                "name their store with --keys",
                setting="keys",
            )

    def outcomes_url(self) -> str:
        return self.outcomes if self.outcomes is not None else services_url(self.store)

    def keys_url(self) -> str:
        return self.keys if self.keys is not None else self.store

    def for_tenant(self, place: Place, prefix: str) -> ServeConfig:
        """This configuration for one tenant: its databases, its bus prefix."""
        return msgspec.structs.replace(
            self,
            store=place.store,
            read_model=place.read_model,
            outcomes=place.outcomes,
            keys=None,
            prefix=prefix,
            tenancy=None,
            tenant=place.tenant,
        )


def open_config_bus(config: ServeConfig) -> Bus:
    """The bus ``config`` names, logged in with its credentials."""
    password = read_secret(env=config.nats_password_env, file=config.nats_password_file)
    token = read_secret(env=config.nats_token_env, file=config.nats_token_file)
    return open_bus(config.nats, user=config.nats_user, password=password, token=token)


def services_url(store: str) -> str:
    """The default database for a command service's own tables, beside ``store``."""
    return database_beside(store, "services")


class Runtime:
    """The running services of ``definition`` per ``config`` (an async
    context manager). ``commands``/``queue`` are set on the command side,
    ``query`` on the query side."""

    def __init__(self, definition: ServiceDefinition, config: ServeConfig) -> None:
        self.definition = definition
        self.config = config
        self.topology = Topology(config.prefix, replicas=config.replicas)
        self.bus: Bus | None = None
        self.store: EventStore | None = None
        self.keys: KeyStore | None = None
        self.encrypting: list[EncryptingStore] = []
        self.outcomes: OutcomeStore | None = None
        self.commands: CommandBus | None = None
        self.queue: CommandQueue | None = None
        self.workers: CommandWorkers | None = None
        self.relay: Relay | None = None
        self.read_model: ReadModel | None = None
        self.mirror: MirrorStore | None = None
        self.consumer: BusConsumer | None = None
        self.runner: ProjectionRunner | None = None
        self.query: QueryService | None = None
        self.failures: dict[str, str] = {}
        self.operations = Operations()
        self._tasks: list[asyncio.Task[None]] = []
        self._stoppers: list[Callable[[], None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._stopping = asyncio.Event()

    @property
    def serves_commands(self) -> bool:
        return self.config.role in ("all", "command")

    @property
    def serves_queries(self) -> bool:
        return self.config.role in ("all", "query")

    async def __aenter__(self) -> Runtime:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.bus = open_config_bus(self.config)
        self._closers.append(self.bus.close)
        self._closers.append(self.operations.close)
        watch(self, functools.partial(measure, self))
        if self.config.encrypt:
            config = self.config
            master = read_secret(env=config.master_key_env, file=config.master_key_file)
            keys = self.keys = open_key_store(
                config.keys_url(), master_key=hex_key(master, "master key")
            )
            self._closers.append(keys.close)
        if self.serves_queries:
            await self._start_queries(self.bus)
        if self.serves_commands:
            await self._start_commands(self.bus)

    async def _start_queries(self, bus: Bus) -> None:
        config, definition = self.config, self.definition
        read_model = self.read_model = open_read_model(config.read_model)
        self._closers.append(read_model.close)
        mirror = self.mirror = MirrorStore(
            read_model, poll_interval=min(config.poll_interval, 0.25)
        )
        await mirror.setup()
        reads: EventStore = instrumented(self._decrypting(mirror))
        consumer = self.consumer = BusConsumer(
            bus, mirror, self.topology, durable=config.consumer, ack_wait=config.ack_wait
        )
        runner = self.runner = ProjectionRunner(
            reads,
            read_model,
            definition.projections,
            definition.codec,
            poll_interval=config.poll_interval,
        )
        await runner.start()
        self._closers.append(runner.stop)
        cache: QueryCache[QueryAnswer] = QueryCache(
            ttl=config.cache_ttl, generation=lambda: read_model.commits
        )
        self.query = QueryService(
            runner,
            reads,
            definition.queries,
            cache=cache,
            bus_pending=lambda: consumer.bus_pending,
            details=self.details,
            max_wait=config.max_wait,
        )
        self._spawn("consumer", consumer.run, consumer.stop)

    async def _start_commands(self, bus: Bus) -> None:
        config, definition = self.config, self.definition
        raw = await connect(config.store)
        self._closers.append(raw.close)
        store = self.store = instrumented(self._audited(self._decrypting(raw)))
        outcomes = self.outcomes = open_outcomes(config.outcomes_url())
        self._closers.append(outcomes.close)
        commands = self.commands = CommandBus(definition.commands, store, outcomes)
        commands.observers.append(observe_command)
        queue = self.queue = CommandQueue(commands, bus, self.topology)
        await queue.setup()
        checkpoints = open_checkpoints(config.outcomes_url())
        self._closers.append(checkpoints.close)
        relay_checkpoints: CheckpointStore = checkpoints
        if not bus.durable:
            # The bus forgets everything when the process ends: resume from the mirror.
            assert self.mirror is not None
            relay_checkpoints = MirrorCheckpoints(self.mirror)
        # The relay reads the log as stored: personal fields travel encrypted
        # on the bus, and the query side decrypts them with the subject keys.
        # It follows the log on the store's replicas where it has some.
        relay = self.relay = Relay(
            route_reads(instrumented(raw)),
            bus,
            self.topology,
            checkpoints=relay_checkpoints,
            poll_interval=config.poll_interval,
        )
        self._spawn("relay", relay.run, relay.stop)
        workers = self.workers = CommandWorkers(
            commands,
            bus,
            self.topology,
            concurrency=max(1, config.workers),
            ack_wait=config.ack_wait,
        )
        if not bus.durable:
            requeued = await queue.requeue_pending(older_than=0)
            if requeued:
                log.warning("queued again %d commands left pending by the last run", requeued)
        if config.workers > 0:
            self._spawn("workers", workers.run, workers.stop)
        self._spawn("requeue", self._requeue_loop, lambda: None)
        managers = definition.process_managers(store) if definition.process_managers else []
        for manager in managers:
            subscription = manager.subscribe(
                store, definition.codec, checkpoints, poll_interval=config.poll_interval
            )
            self._spawn(f"process:{manager.name}", subscription.run, subscription.stop)

    def _decrypting(self, store: EventStore) -> EventStore:
        """``store`` seen through the subject keys, when encryption is on."""
        if self.keys is None:
            return store
        wrapped = EncryptingStore(store, self.definition.codec.registry, self.keys)
        self.encrypting.append(wrapped)
        return wrapped

    def _audited(self, store: EventStore) -> EventStore:
        return AuditingStore(store, self.config.audit) if self.config.audit else store

    async def forget(self, subject: str) -> int:
        """Destroy a data subject's keys (crypto-shredding); how many. Rebuild
        read models that hold personal fields afterwards."""
        if self.keys is None:
            raise ConfigurationError(
                "forget needs encryption: serve with --encrypt", setting="encrypt"
            )
        count = await self.keys.forget(subject)
        for wrapped in self.encrypting:
            wrapped.forget_cached()
        return count

    async def _requeue_loop(self) -> None:
        """Queue again commands pending for longer than ``requeue_after``
        (their message was lost: a failed publish, a purged queue)."""
        every = max(1.0, min(60.0, self.config.requeue_after / 2))
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)
            if self._stopping.is_set() or self.queue is None:
                return
            await self.queue.requeue_pending(older_than=self.config.requeue_after)

    def _spawn(
        self, name: str, run: Callable[[], Awaitable[None]], stop: Callable[[], None]
    ) -> None:
        self._stoppers.append(stop)
        self._tasks.append(asyncio.create_task(self._supervise(name, run), name=name))

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await run()
                if self._stopping.is_set():
                    return
            except asyncio.CancelledError:
                raise
            except (ConfigurationError, MirrorGap) as exc:
                self.failures[name] = f"{type(exc).__name__}: {exc}"
                log.error("%s stopped: %s", name, exc)
                return
            except Exception as exc:
                self.failures[name] = f"{type(exc).__name__}: {exc}"
                log.error("%s failed (restarting in %.1fs): %s", name, delay, exc, exc_info=exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        forget(self)
        self._stopping.set()
        for stop in self._stoppers:
            stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        for close in reversed(self._closers):
            try:
                await close()
            except Exception as exc:  # closing what failed may fail again
                log.debug("closing: %s", exc)
        self._closers.clear()

    async def details(self) -> dict[str, Any]:
        """What ``/status`` shows beside the projections."""
        out: dict[str, Any] = {"role": self.config.role, "failures": dict(self.failures)}
        if self.consumer is not None and self.mirror is not None:
            source = await self.mirror.source(self.topology.events_stream)
            out["consumer"] = {
                "applied": self.consumer.applied,
                "parked": self.consumer.parked,
                "bus_pending": self.consumer.bus_pending,
                "failures": self.consumer.failures,
                "mirror": msgspec.to_builtins(source) if source is not None else None,
            }
        if self.query is not None and self.query.cache is not None:
            out["cache"] = self.query.cache.stats()
        if self.relay is not None:
            out["relay"] = {"position": self.relay.position, "published": self.relay.published}
        if self.store is not None:
            replicas = await replica_health(self.store)
            if replicas:
                out["store_replicas"] = msgspec.to_builtins(replicas)
        return out
