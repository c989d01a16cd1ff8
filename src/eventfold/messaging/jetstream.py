"""The bus on NATS JetStream (nats-py, the ``nats`` extra).

Streams are file-backed, with the replicas the spec asks for (three in a
three-node cluster); publishing is pipelined (every message of a batch is
sent before the first acknowledgement is awaited) and guarded by
``Nats-Expected-Last-Sequence`` so that what is stored is always an in-order
prefix of the batch. Consumers are durable pull consumers with explicit
acknowledgements. The client reconnects on its own to any server of the
cluster it knows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from eventfold.errors import BusError, BusUnavailable, ConfigurationError, PublishFailed
from eventfold.messaging.api import (
    MSG_ID,
    ConsumerSpec,
    Delivery,
    Message,
    PublishAck,
    StoredMessage,
    StreamInfo,
    StreamSpec,
)
from eventfold.security.secrets import redact

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import api as js_api
except ImportError as exc:  # pragma: no cover - depends on installed extras
    raise ConfigurationError(
        "the NATS bus needs the 'nats' extra: pip install 'eventfold[nats]'", setting="nats"
    ) from exc

log = logging.getLogger("eventfold.messaging")

EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"


def _servers(servers: str | Sequence[str]) -> list[str]:
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",")]
    out = [s for s in servers if s]
    if not out:
        raise ConfigurationError("no NATS server URL given", setting="nats")
    for url in out:
        if not url.startswith(("nats://", "tls://")):
            raise ConfigurationError(f"not a NATS URL: {url!r}", setting="nats")
    return out


def _unavailable(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (
            nats.errors.ConnectionClosedError,
            nats.errors.NoServersError,
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            nats.js.errors.NoStreamResponseError,
            nats.js.errors.ServiceUnavailableError,
            TimeoutError,
            OSError,
        ),
    )


def _wrap(exc: BaseException, what: str) -> BusError:
    if _unavailable(exc):
        return BusUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return BusError(f"{what}: {type(exc).__name__}: {exc}")


class _Replies:
    """Publish acknowledgements, matched to their messages by reply subject:
    many publishes in flight on one connection, their order kept."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._next = 0
        self._waiting: dict[str, asyncio.Future[PublishAck]] = {}

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def send(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> asyncio.Future[PublishAck]:
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[PublishAck] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        self._waiting[token] = future
        await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)
        return future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return
        status = (msg.headers or {}).get("Status")
        if status == "503":
            future.set_exception(BusUnavailable("no stream answered (no responders)"))
            return
        try:
            reply = json.loads(msg.data)
        except ValueError:
            future.set_exception(BusError(f"unreadable publish acknowledgement: {msg.data!r}"))
            return
        error = reply.get("error")
        if error is not None:
            future.set_exception(
                BusError(f"{error.get('description', error)} (code {error.get('err_code')})")
            )
            return
        future.set_result(
            PublishAck(
                str(reply.get("stream", "")), int(reply["seq"]), bool(reply.get("duplicate"))
            )
        )


class _Delivery:
    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        meta = msg.metadata
        self._seq = int(meta.sequence.stream)
        self._attempt = int(meta.num_delivered or 1)
        self._pending = int(meta.num_pending or 0)

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self._msg.headers or {}

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def pending(self) -> int:
        return self._pending

    async def ack(self) -> None:
        with contextlib.suppress(nats.errors.MsgAlreadyAckdError):
            await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        with contextlib.suppress(nats.errors.MsgAlreadyAckdError):
            await self._msg.nak(delay=delay)

    async def term(self) -> None:
        with contextlib.suppress(nats.errors.MsgAlreadyAckdError):
            await self._msg.term()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class _Puller:
    def __init__(self, sub: Any, stream: str, durable: str) -> None:
        self._sub = sub
        self._stream = stream
        self._durable = durable

    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except Exception as exc:
            raise _wrap(exc, f"fetching from {self._stream}/{self._durable}") from exc
        return [_Delivery(m) for m in msgs]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


class JetStreamBus:
    """``JetStreamBus("nats://127.0.0.1:4222")`` (several URLs, comma
    separated or as a list, for a cluster). Connects on first use;
    ``connect_timeout`` bounds the first connection, ``timeout`` each request
    and each publish acknowledgement."""

    durable = True

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        name: str = "eventfold",
        connect_timeout: float = 5.0,
        timeout: float = 5.0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.servers = _servers(servers)
        self._auth = {
            k: v for k, v in (("user", user), ("password", password), ("token", token)) if v
        }
        self.name = name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._nc: NATS | None = None
        self._reply_box: _Replies | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The servers, any password in them replaced by ``***``."""
        return redact(",".join(self.servers))

    async def __aenter__(self) -> JetStreamBus:
        await self._client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _client(self) -> NATS:
        if self._closed:
            raise BusError("the bus is closed")
        if self._nc is not None:
            return self._nc
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._nc is None:
                self._nc = await self._connect()
        return self._nc

    async def _connect(self) -> NATS:
        nc = NATS()

        async def on_error(exc: Exception) -> None:
            log.debug("nats: %s: %s", type(exc).__name__, exc)

        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=self.servers,
                    name=self.name,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]
                    error_cb=on_error,
                    **self._auth,  # type: ignore[arg-type]
                ),
                self.connect_timeout,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = redact(repr(exc)) if self._auth else repr(exc)
            raise BusUnavailable(f"cannot connect to NATS at {self.url}: {reason}") from exc
        return nc

    async def _js(self) -> Any:
        return (await self._client()).jetstream(timeout=self.timeout)

    @staticmethod
    def _info(info: Any) -> StreamInfo:
        created = info.created.isoformat() if info.created is not None else ""
        state = info.state
        return StreamInfo(
            name=info.config.name,
            identity=created,
            first_seq=int(state.first_seq),
            last_seq=int(state.last_seq),
            messages=int(state.messages),
        )

    async def ensure_stream(self, spec: StreamSpec) -> StreamInfo:
        js = await self._js()
        try:
            return self._info(await js.stream_info(spec.name))
        except nats.js.errors.NotFoundError:
            pass
        except Exception as exc:
            raise _wrap(exc, f"stream info {spec.name}") from exc
        config = js_api.StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            retention=(
                js_api.RetentionPolicy.WORK_QUEUE
                if spec.work_queue
                else js_api.RetentionPolicy.LIMITS
            ),
            storage=js_api.StorageType.FILE,
            num_replicas=spec.replicas,
            duplicate_window=spec.duplicate_window,
            max_age=spec.max_age or None,
        )
        try:
            return self._info(await js.add_stream(config))
        except nats.js.errors.BadRequestError:
            # Created meanwhile by another process (or with another config): use it.
            try:
                return self._info(await js.stream_info(spec.name))
            except Exception as exc:
                raise _wrap(exc, f"creating stream {spec.name}") from exc
        except Exception as exc:
            raise _wrap(exc, f"creating stream {spec.name}") from exc

    async def stream_info(self, stream: str) -> StreamInfo:
        js = await self._js()
        try:
            return self._info(await js.stream_info(stream))
        except Exception as exc:
            raise _wrap(exc, f"stream info {stream}") from exc

    async def publish(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        expected_last_seq: int | None = None,
    ) -> list[PublishAck]:
        if not messages:
            return []
        replies = await self._replies()
        futures: list[asyncio.Future[PublishAck]] = []
        acks: list[PublishAck] = []
        try:
            for i, message in enumerate(messages):
                headers = dict(message.headers)
                if message.msg_id is not None:
                    headers[MSG_ID] = message.msg_id
                if expected_last_seq is not None:
                    headers[EXPECTED_LAST_SEQ] = str(expected_last_seq + i)
                # Sent one after the other on one connection: the server sees them in order.
                futures.append(await replies.send(message.subject, message.data, headers))
            for future in futures:
                acks.append(await asyncio.wait_for(future, self.timeout))
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # seen: the whole batch is reported as failed
            raise PublishFailed(stream, f"{type(exc).__name__}: {exc}", acked=acks) from exc
        return acks

    async def _replies(self) -> _Replies:
        nc = await self._client()
        if self._reply_box is None:
            box = _Replies(nc)
            await box.start()
            self._reply_box = box
        return self._reply_box

    async def get(self, stream: str, seq: int) -> StoredMessage | None:
        js = await self._js()
        try:
            raw = await js.get_msg(stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None
        except Exception as exc:
            raise _wrap(exc, f"reading {stream} #{seq}") from exc
        headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
        return StoredMessage(raw.subject or "", raw.data or b"", headers, int(raw.seq or seq))

    async def puller(self, stream: str, spec: ConsumerSpec) -> _Puller:
        js = await self._js()
        config = js_api.ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
            filter_subject=spec.filter_subject,
        )
        try:
            await js.add_consumer(stream, config)
        except nats.js.errors.BadRequestError as exc:
            # It exists with settings that cannot change in place: use it as it is.
            log.warning("consumer %s/%s kept as it is: %s", stream, spec.durable, exc)
        except Exception as exc:
            raise _wrap(exc, f"creating consumer {stream}/{spec.durable}") from exc
        try:
            sub = await js.pull_subscribe_bind(durable=spec.durable, stream=stream)
        except Exception as exc:
            raise _wrap(exc, f"binding consumer {stream}/{spec.durable}") from exc
        return _Puller(sub, stream, spec.durable)

    async def delete_stream(self, stream: str) -> None:
        """Remove a stream, its messages and its consumers (nothing if it
        does not exist)."""
        js = await self._js()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream)

    async def close(self) -> None:
        self._closed = True
        nc, self._nc = self._nc, None
        self._reply_box = None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=1)
            with contextlib.suppress(Exception):
                await nc.close()
