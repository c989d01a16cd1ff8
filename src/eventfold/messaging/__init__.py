"""The message bus: events leave the store through an outbox relay, travel on
a bus (NATS JetStream, or an in-process bus for the embedded default), and
reach the query side through a durable consumer that keeps a mirror of the
log for projections to read.

``JetStreamBus`` needs the ``nats`` extra and is imported on first use."""

from eventfold.errors import (
    BusError,
    BusUnavailable,
    MirrorGap,
    PoisonMessage,
    PublishFailed,
)
from eventfold.messaging.api import (
    Bus,
    ConsumerSpec,
    Delivery,
    Message,
    PublishAck,
    Puller,
    StoredMessage,
    StreamInfo,
    StreamSpec,
)
from eventfold.messaging.buses import open_bus, register_bus
from eventfold.messaging.consumer import BusConsumer
from eventfold.messaging.intake import Incoming, TakenIn
from eventfold.messaging.memory import InProcessBus
from eventfold.messaging.mirror import MirrorCheckpoints, MirrorStore, Parked, SourceState
from eventfold.messaging.relay import Relay
from eventfold.messaging.topology import Topology
from eventfold.messaging.wire import decode_event, event_message

__all__ = [
    "Bus",
    "BusConsumer",
    "BusError",
    "BusUnavailable",
    "ConsumerSpec",
    "Delivery",
    "InProcessBus",
    "Incoming",
    "Message",
    "MirrorCheckpoints",
    "MirrorGap",
    "MirrorStore",
    "Parked",
    "PoisonMessage",
    "PublishAck",
    "PublishFailed",
    "Puller",
    "Relay",
    "SourceState",
    "StoredMessage",
    "StreamInfo",
    "StreamSpec",
    "TakenIn",
    "Topology",
    "decode_event",
    "event_message",
    "open_bus",
    "register_bus",
]


def __getattr__(name: str) -> object:
    # JetStreamBus needs nats-py (the 'nats' extra): import it on first use.
    if name == "JetStreamBus":
        from eventfold.messaging.jetstream import JetStreamBus

        return JetStreamBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
