"""given / when / then for deciders: ``given(decider, *past).when(cmd).then(*new)``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from eventfold.domain.decider import Decider

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


class Scenario(Generic[C, E, S]):
    def __init__(self, decider: Decider[C, E, S], past: tuple[E, ...]) -> None:
        self.decider = decider
        self.past = past
        self._command: C | None = None
        self._has_command = False

    def when(self, command: C) -> Scenario[C, E, S]:
        self._command = command
        self._has_command = True
        return self

    def _decide(self) -> list[E]:
        if not self._has_command:
            raise AssertionError("call .when(command) before .then")
        state = self.decider.fold(self.past)
        return self.decider.events(self._command, state)  # type: ignore[arg-type]

    def then(self, *expected: E) -> list[E]:
        """Assert the command produces exactly ``expected``, in order."""
        produced = self._decide()
        if produced != list(expected):
            raise AssertionError(f"expected events {list(expected)!r}, got {produced!r}")
        return produced

    def then_raises(self, error: type[BaseException], match: str | None = None) -> BaseException:
        """Assert the command is rejected with ``error`` (message containing ``match``)."""
        try:
            produced = self._decide()
        except error as exc:
            if match is not None and match not in str(exc):
                raise AssertionError(f"{exc!r} does not mention {match!r}") from exc
            return exc
        raise AssertionError(f"expected {error.__name__}, got events {produced!r}")

    def then_state(self) -> Any:
        """The state after the past events and the command's events."""
        return self.decider.fold(self._decide(), self.decider.fold(self.past))


def given(decider: Decider[C, E, S], *past: E) -> Scenario[C, E, S]:
    return Scenario(decider, past)
