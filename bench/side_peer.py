"""The ``eventsourcing`` package (the peer), through its documented API: an
``Application`` with an ``Aggregate``, persistence chosen by environment
(``PERSISTENCE_MODULE=eventsourcing.sqlite`` / ``eventsourcing.postgres``),
snapshots through ``take_snapshot``, the log through ``notification_log``,
and a projection through its ``ProjectionRunner`` into a tracking recorder
(the SQL view) that writes the row and the tracking record in one
transaction. Its defaults are kept (SQLite ``synchronous`` is SQLite's
default, FULL). It has no async API, so concurrent writers are processes."""

from __future__ import annotations

import multiprocessing
import time
from functools import singledispatchmethod
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL, Identifier

from bench.backends import Backend
from bench.common import NOTE, Measure


class Account(Aggregate):
    def __init__(self) -> None:
        self.total = 0

    @event("Deposited")
    def deposit(self, amount: int, note: str) -> None:
        self.total += amount


class Bank(Application[Any]):
    # Pages of the notification log as large as eventfold's (the default is 10).
    log_section_size = 1000


class SnapshottingBank(Bank):
    is_snapshotting_enabled = True


_UPSERT = (
    "INSERT INTO balances (account, amount) VALUES (?, ?) "
    "ON CONFLICT (account) DO UPDATE SET amount = balances.amount + excluded.amount"
)


class SQLiteBalances(SQLiteTrackingRecorder):
    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS balances "
            "(account TEXT PRIMARY KEY, amount INTEGER NOT NULL)"
        )
        return statements

    def deposit(self, account: str, amount: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(_UPSERT, (account, amount))
            self._insert_tracking(c, tracking)

    def total(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT sum(amount) FROM balances")
            return int(c.fetchone()[0])


class PostgresBalances(PostgresTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._table = Identifier(self.datastore.schema, "balances")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (account text PRIMARY KEY, amount bigint NOT NULL)"
            ).format(self._table)
        )
        self._upsert = SQL(
            "INSERT INTO {0} (account, amount) VALUES (%s, %s) ON CONFLICT (account) "
            "DO UPDATE SET amount = {0}.amount + excluded.amount"
        ).format(self._table)

    def deposit(self, account: str, amount: int, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._upsert, (account, amount), prepare=True)
            self._insert_tracking(curs, tracking)

    def total(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT sum(amount) AS s FROM {0}").format(self._table))
            row = curs.fetchone()
            return int(row["s"])


class Balances(Projection[Any]):
    name = "balances"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: Account.Deposited, tracking: Tracking) -> None:  # type: ignore[name-defined]
        self.view.deposit(str(domain_event.originator_id), domain_event.amount, tracking)


def _writer(env: dict[str, str], count: int, barrier: Any, results: Any) -> None:
    try:
        app = Bank(env)
        account = Account()
        app.save(account)
        barrier.wait()
        latencies = []
        started = time.perf_counter()
        for i in range(1, count + 1):
            t0 = time.perf_counter()
            account.deposit(i, NOTE)
            app.save(account)
            latencies.append(time.perf_counter() - t0)
        results.put((started, time.perf_counter(), latencies))
        app.close()
    except BaseException as exc:
        barrier.abort()
        results.put(repr(exc))


class Side:
    name = "eventsourcing"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._log_env: dict[str, str] | None = None
        self._log_events = 0
        self._log_sum = 0

    def env(self, prefix: str) -> dict[str, str]:
        if self.backend.kind == "sqlite":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.backend.sqlite_path(prefix),
                "SQLITE_LOCK_TIMEOUT": "60",
            }
        parts = self.backend.pg_parts()
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts["dbname"],
            "POSTGRES_HOST": parts["host"],
            "POSTGRES_PORT": parts["port"],
            "POSTGRES_USER": parts["user"],
            "POSTGRES_PASSWORD": parts["password"],
            "POSTGRES_SCHEMA": self.backend.pg_schema(prefix),
        }

    def settings(self) -> dict[str, Any]:
        """What the peer's own connection runs with (synchronous on SQLite)."""
        app = Bank(self.env("es_settings"))
        try:
            if self.backend.kind == "sqlite":
                with app.recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
                    c.execute("PRAGMA synchronous")
                    sync = c.fetchone()[0]
                    c.execute("PRAGMA journal_mode")
                    journal = c.fetchone()[0]
                return {
                    "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[sync],
                    "journal_mode": journal,
                }
            return {"pool_size": app.recorder.datastore.pool.max_size}  # type: ignore[attr-defined]
        finally:
            app.close()

    # --- 1 ----------------------------------------------------------------------------

    def single_appends(self, n: int) -> Measure:
        app = Bank(self.env("es_single"))
        try:
            account = Account()
            app.save(account)
            latencies = []
            started = time.perf_counter()
            for i in range(1, n + 1):
                t0 = time.perf_counter()
                account.deposit(i, NOTE)
                app.save(account)
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        finally:
            app.close()
        return Measure(n, elapsed, latencies)

    # --- 2 ----------------------------------------------------------------------------

    def concurrent(self, writers: int, per_writer: int) -> Measure:
        env = self.env("es_conc")
        Bank(env).close()  # create the tables once, before the writers start
        env["CREATE_TABLE"] = "no"  # (concurrent CREATE ... IF NOT EXISTS can fail)
        if self.backend.kind == "postgres":
            # One single-threaded writer per process needs one connection; the
            # default pool of 5 per process would pass max_connections at 64.
            env["POSTGRES_POOL_SIZE"] = "1"
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(writers)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(env, per_writer, barrier, results))
            for _ in range(writers)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=900) for _ in procs]
        failures = sorted((o for o in outcomes if isinstance(o, str)), key=lambda o: "Barrier" in o)
        if failures:
            raise RuntimeError(f"peer writer failed: {failures[0]}")
        for p in procs:
            p.join(timeout=60)
            if p.exitcode != 0:
                raise RuntimeError(f"a peer writer process failed ({p.exitcode})")
        started = min(o[0] for o in outcomes)
        ended = max(o[1] for o in outcomes)
        latencies = [x for o in outcomes for x in o[2]]
        return Measure(writers * per_writer, ended - started, latencies)

    # --- 3 ----------------------------------------------------------------------------

    def batch_append(self, n: int, repeat: int) -> list[Measure]:
        app = Bank(self.env("es_batch"))
        out = []
        try:
            for r in range(repeat + 1):
                account = Account()
                for i in range(n - 1):  # with the creation event: n events
                    account.deposit(i, NOTE)
                started = time.perf_counter()
                app.save(account)
                elapsed = time.perf_counter() - started
                if r:
                    out.append(Measure(n, elapsed))
        finally:
            app.close()
        return out

    # --- 4 ----------------------------------------------------------------------------

    def load(self, n: int, tail: int, loads: int) -> tuple[Measure, Measure]:
        app = SnapshottingBank(self.env("es_load"))
        try:
            ids = []
            for _ in range(2):
                account = Account()
                for i in range(n - 1):
                    account.deposit(i, NOTE)
                app.save(account)
                ids.append(account.id)
            app.take_snapshot(ids[1])
            account = app.repository.get(ids[1])
            for i in range(tail):
                account.deposit(i, NOTE)
            app.save(account)
            results = []
            for aggregate_id, count in ((ids[0], n), (ids[1], n + tail)):
                app.repository.get(aggregate_id)  # warm up
                latencies = []
                for _ in range(loads):
                    t0 = time.perf_counter()
                    loaded = app.repository.get(aggregate_id)
                    latencies.append(time.perf_counter() - t0)
                    assert loaded.version == count
                results.append(Measure(count * loads, sum(latencies), latencies))
        finally:
            app.close()
        return results[0], results[1]

    # --- 5 and 6 ----------------------------------------------------------------------

    def populate(self, events: int, streams: int) -> None:
        self._log_env = env = self.env("es_log")
        per = events // streams
        self._log_events = streams * per
        self._log_sum = streams * sum(range(per - 1))
        app = Bank(env)
        try:
            for base in range(0, streams, 10):
                accounts = []
                for _ in range(base, min(base + 10, streams)):
                    account = Account()
                    for i in range(per - 1):
                        account.deposit(i, NOTE)
                    accounts.append(account)
                app.save(*accounts)
        finally:
            app.close()

    def read_log(self) -> Measure:
        assert self._log_env is not None
        app = Bank(self._log_env)
        try:
            count = 0
            start = 1
            to_domain_event = app.mapper.to_domain_event
            started = time.perf_counter()
            while True:
                items = app.notification_log.select(start=start, limit=1000)
                for notification in items:
                    to_domain_event(notification)
                    count += 1
                if len(items) < 1000:
                    break
                start = items[-1].id + 1
            elapsed = time.perf_counter() - started
        finally:
            app.close()
        assert count == self._log_events, (count, self._log_events)
        return Measure(count, elapsed)

    def projection(self) -> Measure:
        assert self._log_env is not None
        env = dict(self._log_env)
        if self.backend.kind == "sqlite":
            env["BALANCES_SQLITE_DBNAME"] = self.backend.sqlite_path("es_reads")
            view: Any = SQLiteBalances
        else:
            env["BALANCES_POSTGRES_SCHEMA"] = self.backend.pg_schema("es_rm")
            view = PostgresBalances
        app = Bank(env)
        head = app.recorder.max_notification_id()
        app.close()
        if self.backend.kind == "sqlite":
            return self._pull_projection(env, view, head)
        started = time.perf_counter()
        with ProjectionRunner(
            application_class=Bank, projection_class=Balances, view_class=view, env=env
        ) as runner:
            runner.wait(head, timeout=3600)
            elapsed = time.perf_counter() - started
            total = runner.view.total()
        assert total == self._log_sum, (total, self._log_sum)
        return Measure(self._log_events, elapsed)

    def _pull_projection(self, env: dict[str, str], view: Any, head: int) -> Measure:
        """The peer's SQLite recorder has no subscriptions (its ProjectionRunner
        raises NotImplementedError there), so this does what the runner's
        subscription does on PostgreSQL: pull the notification log in pages,
        map each notification to its domain event, and call the same
        projection's process_event with its Tracking."""
        from eventsourcing.persistence import InfrastructureFactory

        started = time.perf_counter()
        app = Bank(env)
        recorder = InfrastructureFactory.construct(
            env=ProjectionRunner._construct_env(name=Balances.name, env=env)
        ).tracking_recorder(view)
        projection = Balances(view=recorder)
        try:
            position = recorder.max_tracking_id(app.name) or 0
            to_domain_event = app.mapper.to_domain_event
            while position < head:
                items = app.notification_log.select(start=position + 1, limit=1000)
                for notification in items:
                    projection.process_event(
                        to_domain_event(notification), Tracking(app.name, notification.id)
                    )
                position = items[-1].id
            elapsed = time.perf_counter() - started
            total = recorder.total()
        finally:
            app.close()
        assert total == self._log_sum, (total, self._log_sum)
        return Measure(self._log_events, elapsed)
