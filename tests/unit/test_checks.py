"""JSON equality for idempotent retries: the same value however a backend
spells it."""

import pytest

from eventfold.store.checks import same_json


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (b'{"n": 6.956079313940438e16}', b'{"n": 69560793139404380}', True),
        (b'{"n": 1.5}', b'{"n": 1.50}', True),
        (b'{"a": 1, "b": [1, 2]}', '{"b": [1, 2], "a": 1}', True),
        (b'{"n": 1}', b'{"n": 2}', False),
        (b'{"n": 0.1}', b'{"n": 0.10000000000000001}', False),
        (b'{"n": 1}', b"not json", False),
    ],
)
def test_same_json(a: bytes, b: bytes | str, equal: bool) -> None:
    assert same_json(a, b) is equal
