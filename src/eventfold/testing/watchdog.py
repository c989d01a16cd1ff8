"""Servers a test run starts do not outlive it.

A ``Watchdog`` is a small process holding the read end of a pipe whose write
end only the starting process has. When that process ends, however it ends
(``kill -9`` included), the pipe closes and the watchdog runs its command
(e.g. ``pg_ctl stop -m immediate``). A clean stop disarms it first."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = """
import json, subprocess, sys
sys.stdin.buffer.read()
argv, user = json.loads(sys.argv[1])
switch = {} if user is None else {"user": user[0], "group": user[1], "extra_groups": []}
subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL, cwd="/", timeout=120, **switch)
"""


class Watchdog:
    """Runs ``command`` once the process that made it has ended, unless
    ``disarm()`` was called first; as ``user`` (uid, gid) if given."""

    def __init__(self, command: list[str], *, user: tuple[int, int] | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, json.dumps([command, user])],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Not in the test run's process group: a Ctrl-C there must leave
            # it to see the pipe close.
            start_new_session=True,
        )

    @property
    def armed(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def disarm(self) -> None:
        """End the watchdog without running its command."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
