"""Event types, their registry, and the metadata that travels with every event."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import msgspec

from eventfold.domain.clocks import check_occurred_at
from eventfold.errors import RegistrationError, UnknownEventType
from eventfold.store.checks import validate_type_name

T = TypeVar("T")
E = TypeVar("E")
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Metadata(msgspec.Struct, frozen=True, omit_defaults=True):
    """Who and what caused an event, and when it happened. ``extra`` holds
    any other keys (reason, tenant, key id …); all of it is stored as one
    JSON object.

    ``occurred_at`` is the business time: when the event happened in the
    domain, if not when it was recorded (a loan typed in days later). It
    must be timezone-aware, not before 1900, and (when written) not in the
    future; see ``eventfold.domain.clocks``."""

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    extra: dict[str, Any] = {}
    occurred_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.occurred_at is not None:
            check_occurred_at(self.occurred_at)


class Envelope(msgspec.Struct, Generic[E], frozen=True):
    """A decoded event with everything the store knows about it."""

    event: E
    stream_id: str
    version: int
    position: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    metadata: Metadata
    recorded_at: datetime
    tags: tuple[str, ...] = ()

    @property
    def occurred_at(self) -> datetime:
        """When the event happened: ``metadata.occurred_at`` if the
        application gave one, else when it was recorded."""
        return self.metadata.occurred_at or self.recorded_at


class EventType(msgspec.Struct, frozen=True):
    """A registered event class: stable name and current schema version."""

    cls: type[Any]
    name: str
    version: int
    decoder: msgspec.json.Decoder[Any]
    personal: tuple[str, ...] = ()
    subject: str | None = None
    tags: Callable[[Any], Iterable[str]] | None = None


class EventRegistry:
    """Maps stable event names (not Python paths) to classes and back, and holds
    the upcasters that bring old stored shapes up to the current class."""

    def __init__(self) -> None:
        self._by_name: dict[str, EventType] = {}
        self._by_cls: dict[type[Any], EventType] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self,
        name: str | None = None,
        *,
        version: int = 1,
        aliases: tuple[str, ...] = (),
        personal: tuple[str, ...] = (),
        subject: str | None = None,
        tags: Callable[[Any], Iterable[str]] | None = None,
    ) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@registry.register("OrderPlaced", version=2)``.
        ``aliases`` are older names still found in the store. ``personal``
        names string fields holding personal data of the data subject whose
        id is in field ``subject``; an ``EncryptingStore`` encrypts them with
        that subject's key. ``tags(event)`` gives the tags an event of this
        class is stored with (DCB queries match on them), e.g.
        ``tags=lambda e: [f"course:{e.course_id}"]``."""

        def decorate(cls: type[T]) -> type[T]:
            self.add(
                cls,
                name,
                version=version,
                aliases=aliases,
                personal=personal,
                subject=subject,
                tags=tags,
            )
            return cls

        return decorate

    def add(
        self,
        cls: type[Any],
        name: str | None = None,
        *,
        version: int = 1,
        aliases: tuple[str, ...] = (),
        personal: tuple[str, ...] = (),
        subject: str | None = None,
        tags: Callable[[Any], Iterable[str]] | None = None,
    ) -> EventType:
        if not (
            isinstance(cls, type)
            and (issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls))
        ):
            raise RegistrationError(f"{cls!r} must be a msgspec.Struct or a dataclass")
        name = cls.__name__ if name is None else name
        validate_type_name(name)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RegistrationError(f"{name}: version must be an int >= 1")
        if cls in self._by_cls:
            raise RegistrationError(
                f"{cls.__qualname__} is already registered as {self._by_cls[cls].name!r}"
            )
        _check_personal(cls, name, personal, subject)
        if tags is not None and not callable(tags):
            raise RegistrationError(f"{name}: tags must be a function of the event")
        entry = EventType(cls, name, version, msgspec.json.Decoder(cls), personal, subject, tags)
        for key in (name, *aliases):
            validate_type_name(key)
            if key in self._by_name:
                raise RegistrationError(f"event name {key!r} is already registered")
        for key in (name, *aliases):
            self._by_name[key] = entry
        self._by_cls[cls] = entry
        return entry

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator for a function turning a ``name`` payload of ``from_version``
        into the shape of ``from_version + 1``."""

        def decorate(fn: Upcaster) -> Upcaster:
            self.add_upcaster(name, from_version, fn)
            return fn

        return decorate

    def add_upcaster(self, name: str, from_version: int, fn: Upcaster) -> None:
        key = (name, from_version)
        if key in self._upcasters:
            raise RegistrationError(f"{name}: an upcaster from version {from_version} exists")
        self._upcasters[key] = fn

    def upcaster_for(self, name: str, from_version: int) -> Upcaster | None:
        return self._upcasters.get((name, from_version))

    def of_class(self, cls: type[Any]) -> EventType:
        entry = self._by_cls.get(cls)
        if entry is None:
            raise UnknownEventType(cls.__qualname__)
        return entry

    def of_name(self, name: str) -> EventType | None:
        return self._by_name.get(name)

    @property
    def entries(self) -> Mapping[str, EventType]:
        """Every registered name and alias with its type, read-only and live."""
        return MappingProxyType(self._by_name)

    def __contains__(self, item: object) -> bool:
        return item in self._by_cls or item in self._by_name

    @property
    def names(self) -> list[str]:
        return sorted({entry.name for entry in self._by_cls.values()})


def _check_personal(
    cls: type[Any], name: str, personal: tuple[str, ...], subject: str | None
) -> None:
    """Personal fields must be strings (so a forgotten one reads as REDACTED)
    and need a subject field naming whose data they are."""
    if not personal and subject is None:
        return
    if not personal or subject is None:
        raise RegistrationError(f"{name}: personal fields and a subject field go together")
    info = msgspec.inspect.type_info(cls)
    fields = {f.name: f.type for f in getattr(info, "fields", ())}
    for field in (*personal, subject):
        if field not in fields:
            raise RegistrationError(f"{name}: no field {field!r}")
    for field in personal:
        kind = fields[field]
        options = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
        if not all(
            isinstance(t, msgspec.inspect.StrType | msgspec.inspect.NoneType) for t in options
        ):
            raise RegistrationError(f"{name}: personal field {field!r} must be str or str | None")
    if subject in personal:
        raise RegistrationError(f"{name}: the subject field cannot itself be personal")
