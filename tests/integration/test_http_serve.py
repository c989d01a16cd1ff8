"""``eventfold serve`` on the embedded default (SQLite, in-process bus, no
broker): the curl session in docs/services.md runs against it as written,
and SIGINT stops it cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = re.compile(r"eventfold serve: (command|query) API on (http://\S+)")


class Served:
    def __init__(self, proc: subprocess.Popen[str], urls: dict[str, str], lines: list[str]):
        self.proc = proc
        self.urls = urls
        self.lines = lines

    @property
    def command(self) -> str:
        return self.urls["command"]

    @property
    def query(self) -> str:
        return self.urls["query"]


def eventfold_command() -> list[str]:
    return [sys.executable, "-c", "from eventfold.cli import main; main()"]


@contextmanager
def serving(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Iterator[Served]:
    """Run ``eventfold serve ARGS`` (on free ports unless given) until it
    announces its APIs; stop it (SIGINT) when done. ``command`` is how to run
    ``eventfold`` (default: this interpreter's)."""
    ports = [] if "--command-port" in args else ["--command-port", "0", "--query-port", "0"]
    proc = subprocess.Popen(
        [*(command or eventfold_command()), "serve", *ports, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    urls: dict[str, str] = {}
    wanted = {"all": 2}.get(_role(args), 1)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            found = ANNOUNCE.search(line)
            if found:
                urls[found.group(1)] = found.group(2)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while len(urls) < wanted:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("eventfold serve did not start:\n" + "".join(lines))
            time.sleep(0.05)
        yield Served(proc, urls, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(timeout=5)


def _role(args: tuple[str, ...]) -> str:
    return args[args.index("--role") + 1] if "--role" in args else "all"


def curl_session() -> str:
    text = (ROOT / "docs" / "services.md").read_text()
    after = text.split("<!-- curl-session", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_curl_session_in_the_docs_runs_against_eventfold_serve(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("curl and bash are needed to run the documented session")
    with serving(cwd=tmp_path) as served:
        script = curl_session()
        script = script.replace("localhost:8000", served.command.removeprefix("http://"))
        script = script.replace("localhost:8001", served.query.removeprefix("http://"))
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        out = run.stdout
        ids = re.findall(r'"command_id":"([^"]+)","command":"AddLine"[^}]*"ada-pears"', out)
        assert len(ids) == 2 and ids[0] == ids[1]
        assert '"status":"open","lines":1,"items":3' in out  # read your writes
        assert "HTTP/1.1 202 Accepted" in out
        assert re.search(r'"command":"SubmitOrder","status":"succeeded"', out)
        assert '"sku":"pear","available":2' in out
        for fragment in (
            '"status":"conflict"',
            '"status":"rejected"',
            '"status_code":422',
            '"status_code":400',
            '"status_code":404',
            '"status_code":413',
            '"status_code":503',
            '"error":"UnknownQuery"',
            '"detail":{"stream_id":"stock-apple","expected":0,"actual":2}',
        ):
            assert fragment in out, fragment
        # The saga confirmed the order (its last event, 9, as the session
        # says); the files are where the defaults say.
        order = httpx.get(
            f"{served.query}/queries/order",
            params={"order_id": "order-1001", "min_position": 9, "wait": 10},
            timeout=30,
        )
        assert order.json()["rows"][0]["status"] == "confirmed", order.text
        confirmed = r'"version":5,"position":9,"event_id":"[^"]+","type":"OrderConfirmed"'
        assert re.search(confirmed, out)
        assert {"eventfold.db", "eventfold-reads.db", "eventfold-services.db"} <= {
            p.name for p in tmp_path.iterdir()
        }
    assert served.proc.returncode == 0, "".join(served.lines)


def test_a_restarted_embedded_server_continues_where_it_stopped(tmp_path: Path) -> None:
    with serving(cwd=tmp_path) as served:
        for n in range(3):
            placed = httpx.post(
                f"{served.command}/commands/ReceiveStock", json={"sku": "fig", "quantity": n + 1}
            )
            assert placed.status_code == 200, placed.text
    with serving(cwd=tmp_path) as served:
        again = httpx.post(
            f"{served.command}/commands/ReceiveStock", json={"sku": "fig", "quantity": 4}
        )
        token = again.headers["Eventfold-Position"]
        stock = httpx.get(f"{served.query}/queries/stock", params={"min_position": token})
        assert stock.json()["rows"] == [
            {"sku": "fig", "on_hand": 10, "reserved": 0, "available": 10}
        ]
        history = httpx.get(f"{served.query}/streams/stock-fig/events")
        assert [e["version"] for e in history.json()["events"]] == [1, 2, 3, 4]
