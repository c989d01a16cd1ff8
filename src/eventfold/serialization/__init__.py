"""Typed events to stored JSON and back (the codec, upcasting), and personal
fields encrypted per data subject (``EncryptingStore``, key stores)."""

from eventfold.serialization.codec import Codec, RawEvent, decode_metadata
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import (
    KeyStore,
    MemoryKeyStore,
    SQLiteKeyStore,
    open_key_store,
    register_key_store,
)
from eventfold.serialization.upcasting import upcast

__all__ = [
    "REDACTED",
    "Codec",
    "EncryptingStore",
    "KeyStore",
    "MemoryKeyStore",
    "RawEvent",
    "SQLiteKeyStore",
    "decode_metadata",
    "open_key_store",
    "register_key_store",
    "upcast",
]
