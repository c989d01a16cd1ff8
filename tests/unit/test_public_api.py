"""The curated public API: every package's ``__all__`` is sorted, complete
and importable; every error class lives in ``eventfold.errors``, in the
tree its docstring draws, and is exported; names keep their import paths."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types

import pytest

import eventfold
import eventfold.errors

# The shop is an application built on eventfold (its errors are its own
# CommandRejected subclasses), not part of eventfold's API.
APPLICATIONS = "eventfold.examples"


def _modules(packages_only: bool) -> list[types.ModuleType]:
    found = [eventfold]
    for info in pkgutil.walk_packages(eventfold.__path__, "eventfold."):
        if info.name == APPLICATIONS or info.name.startswith(APPLICATIONS + "."):
            continue
        if info.ispkg or not packages_only:
            found.append(importlib.import_module(info.name))
    return found


PACKAGES = _modules(packages_only=True)


def test_every_package_is_walked() -> None:
    names = {p.__name__ for p in PACKAGES}
    assert {"eventfold", "eventfold.store", "eventfold.store.sqlite", "eventfold.testing"} <= names
    assert "eventfold.testing.conformance" in names
    assert len(names) >= 13


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_sorted_complete_and_importable(package: types.ModuleType) -> None:
    names = package.__all__
    # Constants first, then classes and functions, each group in order.
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(names)) == len(names)
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public -= {"annotations"}
    # Names a package imports lazily (an optional extra's) are in __all__ only.
    assert public <= set(names), sorted(public - set(names))
    for name in names:
        assert getattr(package, name) is not None, name


def _error_classes() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module in _modules(packages_only=False):
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("eventfold")
                and not name.startswith("_")
            ):
                found.add(value)
    return found


def test_every_error_class_lives_in_errors_and_is_exported() -> None:
    errors = _error_classes()
    assert len(errors) > 40
    for error in errors:
        assert error.__module__ == "eventfold.errors", error
        assert issubclass(error, eventfold.errors.EventfoldError), error
        assert error.__name__ in eventfold.errors.__all__, error
    defined = {
        value
        for value in vars(eventfold.errors).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert {getattr(eventfold.errors, n) for n in eventfold.errors.__all__} == defined


def _drawn_tree() -> dict[str, set[str]]:
    """Each class drawn in the errors module's docstring, with the classes it
    is drawn under and the other bases named in parentheses after it."""
    block = (eventfold.errors.__doc__ or "").split("::", 1)[1]
    parents: dict[str, set[str]] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name) of the open branches
    for line in block.splitlines():
        match = re.fullmatch(r"([ |+\-]*)([A-Z]\w*)(?: \((.*)\))?", line.rstrip())
        if match is None:
            if line.strip():
                break  # the prose after the drawing
            continue
        column, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        drawn = parents.setdefault(name, set())
        if stack:
            drawn.add(stack[-1][1])
        drawn |= set(re.findall(r"[A-Z]\w+", match.group(3) or ""))
        stack.append((column, name))
    return parents


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    drawn = _drawn_tree()
    classes = {
        name: value
        for name, value in vars(eventfold.errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert set(drawn) == set(classes), sorted(set(drawn) ^ set(classes))
    for name, cls in classes.items():
        bases = {base.__name__ for base in cls.__bases__} - {"Exception"}
        assert drawn[name] == bases, (name, drawn[name], bases)


def test_not_found_errors_share_one_base() -> None:
    from eventfold.errors import (
        NoStateView,
        NotFound,
        UnknownCommand,
        UnknownOutcome,
        UnknownProjection,
        UnknownQuery,
    )

    for cls in (UnknownCommand, UnknownQuery, UnknownOutcome, UnknownProjection, NoStateView):
        assert issubclass(cls, NotFound)


# Where each error could be imported from before it moved to eventfold.errors.
EARLIER_PATHS = [
    ("eventfold.audit", "MissingAuditMetadata"),
    ("eventfold.compliance.inspect", "ReadOnlyViolation"),
    ("eventfold.messaging", "BusError"),
    ("eventfold.messaging", "BusUnavailable"),
    ("eventfold.messaging", "MirrorGap"),
    ("eventfold.messaging", "PoisonMessage"),
    ("eventfold.messaging", "PublishFailed"),
    ("eventfold.messaging.errors", "BusError"),
    ("eventfold.messaging.errors", "BusUnavailable"),
    ("eventfold.messaging.errors", "MirrorGap"),
    ("eventfold.messaging.errors", "PoisonMessage"),
    ("eventfold.messaging.errors", "PublishFailed"),
    ("eventfold.serialization.crypto", "DecryptionError"),
    ("eventfold.serialization.keys", "KeyUnwrapError"),
    ("eventfold.services", "IdempotencyKeyReused"),
    ("eventfold.services", "InvalidCommand"),
    ("eventfold.services", "NoStateView"),
    ("eventfold.services", "UnknownCommand"),
    ("eventfold.services", "UnknownQuery"),
    ("eventfold.services.commands", "IdempotencyKeyReused"),
    ("eventfold.services.commands", "InvalidCommand"),
    ("eventfold.services.commands", "UnknownCommand"),
    ("eventfold.services.http_common", "UnknownOutcome"),
    ("eventfold.services.queries", "NoStateView"),
    ("eventfold.services.queries", "UnknownQuery"),
    ("eventfold.subscriptions", "ProjectionFailed"),
    ("eventfold.subscriptions", "ReadModelTimeout"),
    ("eventfold.subscriptions.errors", "ProjectionFailed"),
    ("eventfold.subscriptions.errors", "ProjectionNotReady"),
    ("eventfold.subscriptions.errors", "ProjectionSuperseded"),
    ("eventfold.subscriptions.errors", "ReadModelError"),
    ("eventfold.subscriptions.errors", "ReadModelTimeout"),
    ("eventfold.subscriptions.errors", "SubscriptionFailed"),
    ("eventfold.subscriptions.errors", "UnknownProjection"),
    ("eventfold.testing.natsserver", "NatsServerError"),
    ("eventfold.testing.pgserver", "PostgresServerError"),
    ("eventfold", "DecryptionError"),
    ("eventfold", "MissingAuditMetadata"),
]

# Other names that moved (to eventfold.store) and keep their earlier path.
MOVED = [
    ("eventfold.compliance.chain", "ChainLink", "eventfold.store.capabilities"),
    ("eventfold.compliance.chain", "ChainReader", "eventfold.store.capabilities"),
    ("eventfold.compliance.chain", "GENESIS", "eventfold.store.chain"),
    ("eventfold.compliance.chain", "link_hash", "eventfold.store.chain"),
    ("eventfold.compliance.chain", "link_message", "eventfold.store.chain"),
    ("eventfold.compliance.inspect", "CategoryInfo", "eventfold.store.capabilities"),
    ("eventfold.compliance.inspect", "Inspector", "eventfold.store.capabilities"),
    ("eventfold.compliance.inspect", "SQLResult", "eventfold.store.capabilities"),
    ("eventfold.compliance.inspect", "StoreStats", "eventfold.store.capabilities"),
    ("eventfold.compliance.inspect", "StreamInfo", "eventfold.store.capabilities"),
    ("eventfold.store", "SnapshotStore", "eventfold.store.capabilities"),
    ("eventfold.testing", "StoreConformance", "eventfold.testing.conformance.core"),
    ("eventfold.testing.conformance", "StoreConformance", "eventfold.testing.conformance.core"),
]


@pytest.mark.parametrize(("module", "name"), EARLIER_PATHS)
def test_errors_keep_their_earlier_import_paths(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(eventfold.errors, name)


@pytest.mark.parametrize(("module", "name", "home"), MOVED)
def test_moved_names_keep_their_earlier_import_paths(module: str, name: str, home: str) -> None:
    moved = getattr(importlib.import_module(module), name)
    assert moved is getattr(importlib.import_module(home), name)
    if inspect.isclass(moved) or inspect.isfunction(moved):
        assert moved.__module__ == home
