"""docs/tutorial.md, every step as written, in a fresh folder.

Each code block is preceded by a comment saying what to do with it:

- ``<!-- file: PATH -->``: write the block to PATH;
- ``<!-- run -->``: run it with bash; each ``#> text`` line in it is a piece
  of what it must print (``<!-- run: after stopping the server -->`` first
  stops the ``eventfold serve`` a ``serve`` block started);
- ``<!-- serve -->``: start the ``eventfold serve`` command in it in the
  background (on free ports: later blocks' ``localhost:8000`` and ``:8001``
  are rewritten to them) until the next ``serve``, or the end;
- ``<!-- not run: why -->``: leave it.

A block without one fails the test, so no step goes untested. Finally the
project it built passes ruff and mypy --strict."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.integration.test_http_serve import ANNOUNCE

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"<!-- (?P<marker>[^>]*?) -->\n```(?P<lang>\w+)\n(?P<body>.*?)```", re.S)


def steps() -> list[tuple[str, str]]:
    text = TUTORIAL.read_text()
    found = [(m.group("marker"), m.group("body")) for m in BLOCK.finditer(text)]
    assert len(found) == text.count("\n```") // 2, "a code block in the tutorial has no marker"
    return found


class Server:
    """``eventfold serve`` started from a tutorial block, on free ports."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        line = command.replace("\\\n", " ").split("#", 1)[0].strip().removesuffix("&")
        line = line.replace("eventfold serve", "eventfold serve --command-port 0 --query-port 0")
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.urls: dict[str, str] = {}
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while len(self.urls) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("eventfold serve did not start:\n" + "".join(self.lines))
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = ANNOUNCE.search(line)
            if found:
                self.urls[found.group(1)] = found.group(2).removeprefix("http://")

    def rewrite(self, script: str) -> str:
        script = script.replace("localhost:8000", self.urls["command"])
        return script.replace("localhost:8001", self.urls["query"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        assert self.proc.returncode in (0, -signal.SIGKILL), "".join(self.lines)


def bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n---\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def logs(project: Path) -> str:
    """The development PostgreSQL server's log, if there is one."""
    log = project / ".eventfold" / "postgres" / "data" / "server.log"
    return f"\n--- {log}:\n{log.read_text()[-3000:]}" if log.exists() else ""


def test_every_step_of_the_tutorial() -> None:
    if shutil.which("curl") is None and not in_ci():
        pytest.skip("curl is needed to follow the tutorial")
    # Not under tmp_path: the development PostgreSQL server runs as another
    # user when the tests run as root, and every pytest session that starts
    # takes the group and other bits off pytest's temporary root, which would
    # lock that user out of its data folder.
    project = Path(tempfile.mkdtemp(prefix="eventfold-tutorial-")) / "library-service"
    project.mkdir()
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200")
    server: Server | None = None
    ran = 0
    try:
        for marker, body in steps():
            if marker.startswith("file: "):
                path = project / marker.removeprefix("file: ")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
            elif marker == "serve":
                if server is not None:
                    server.stop()
                server = Server(body, project, env)
            elif marker in ("run", "run: after stopping the server"):
                if marker != "run" and server is not None:
                    server.stop()
                    server = None
                script = body if server is None else server.rewrite(body)
                printed = bash(script, project, env)
                for expected in re.findall(r"^#> (.*)$", body, flags=re.M):
                    assert expected in printed, f"{expected!r} not in:\n{printed}{logs(project)}"
                ran += 1
            else:
                assert marker.startswith("not run: "), f"unknown marker {marker!r}"
        assert ran >= 8
        for check in (
            ["ruff", "check", "--line-length", "100", "--select", "E,F,W,I,B,UP", "."],
            ["mypy", "--strict", "."],
        ):
            checked = subprocess.run(
                [str(Path(venv_bin) / check[0]), *check[1:]],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        if server is not None:
            server.stop()
        if (project / ".eventfold").exists():
            bash("eventfold dev postgres stop", project, env)
        shutil.rmtree(project.parent, ignore_errors=True)
