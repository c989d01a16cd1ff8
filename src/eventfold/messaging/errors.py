"""Errors of the message bus, the relay and the consumer (defined, with every
other error, in ``eventfold.errors``)."""

from eventfold.errors import BusError, BusUnavailable, MirrorGap, PoisonMessage, PublishFailed

__all__ = ["BusError", "BusUnavailable", "MirrorGap", "PoisonMessage", "PublishFailed"]
