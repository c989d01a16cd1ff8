"""A minimal pytest plugin: runs ``async def`` tests with ``asyncio.run``.

Enable it with ``-p eventfold.testing.plugin`` or
``pytest_plugins = ["eventfold.testing.plugin"]``. Fixtures stay synchronous;
tests open what they need (``async with connect(url)``) inside their own loop.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(func(**kwargs))
    return True
