"""The curated public API: __all__ is sorted, complete and importable."""

import types

import eventfold
import eventfold.errors
import eventfold.store
import eventfold.testing


def test_all_is_sorted_and_complete() -> None:
    for module in (eventfold, eventfold.store, eventfold.testing):
        names = module.__all__
        # Constants first, then classes and functions, each group in order.
        assert names == sorted(names, key=lambda n: (not n.isupper(), n))
        for name in names:  # importable (some load on first use)
            assert getattr(module, name) is not None
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        public -= {"annotations"}
        assert public == set(names), module.__name__


def test_every_error_derives_from_the_root() -> None:
    errors = [
        v
        for v in vars(eventfold.errors).values()
        if isinstance(v, type) and issubclass(v, Exception)
    ]
    assert len(errors) > 10
    assert all(issubclass(e, eventfold.EventfoldError) for e in errors)
