"""The package, not the clone: an sdist and a wheel built the way ``make
dist`` builds them (the wheel from the sdist), without a deprecation warning;
the wheel installed with its extras into a clean virtual environment runs,
from a folder that has nothing of the repository, the demo, ``eventfold
serve`` with the README's curl session, the command line and ``eventfold
init``. And from a fresh copy of the sources, ``make demo`` leaves
``.venv/bin/eventfold serve`` working for the README's curl session."""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from eventfold import __version__
from tests.integration.test_http_serve import serving

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


def readme_session() -> str:
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- readme-session", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


def clean_env(venv: Path) -> dict[str, str]:
    """This machine's environment without this checkout's Python settings,
    with the new environment first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def sources(into: Path, *extra: str) -> Path:
    """The files an sdist is made of (and ``extra`` ones), nothing else from
    this checkout."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", *extra):
        shutil.copy2(ROOT / name, into / name)
    shutil.copytree(
        ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return into


def readme_session_runs(eventfold: Path, cwd: Path, env: dict[str, str]) -> None:
    """``eventfold serve`` in ``cwd``, and the README's curl session against it."""
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("curl and bash are needed to run the README's session")
    with serving(cwd=cwd, env=env, command=[str(eventfold)]) as served:
        script = readme_session()
        script = script.replace("localhost:8000", served.command.removeprefix("http://"))
        script = script.replace("localhost:8001", served.query.removeprefix("http://"))
        session = run("bash", "-euo", "pipefail", "-c", script, cwd=cwd, env=env)
        assert '"stream_id":"order-1001","version":2,"position":3' in session.stdout
        assert re.search(r'"status":"open","lines":1,"items":3,"total_cents":135', session.stdout)
        assert '"up_to_date":true' in session.stdout
    assert served.proc.returncode == 0, "".join(served.lines)


def test_the_wheel_installs_and_runs_from_another_folder(tmp_path: Path) -> None:
    source = sources(tmp_path / "source")
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=tmp_path)
    assert "deprecat" not in (built.stdout + built.stderr).lower(), built.stderr
    wheels = list(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [f"eventfold-{__version__}-py3-none-any.whl"]
    assert (dist / f"eventfold-{__version__}.tar.gz").is_file()
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        meta = email.message_from_bytes(wheel.read(f"eventfold-{__version__}.dist-info/METADATA"))
    assert meta["License-Expression"] == "Apache-2.0" and meta["Version"] == __version__
    assert {"eventfold/examples/shop/services.py", "eventfold/py.typed"} <= names
    assert "eventfold/scaffold/template/PACKAGE/tasks.py.tmpl" in names
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
        "--quiet", "--no-compile", f"{wheels[0]}[http,postgres,nats]",
        cwd=tmp_path,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(venv)
    python, eventfold = venv / "bin" / "python", venv / "bin" / "eventfold"
    where = run(python, "-c", "import eventfold; print(eventfold.__file__)", cwd=elsewhere, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout

    demo = run(python, "-m", "eventfold.examples.shop.demo", cwd=elsewhere, env=env)
    assert "Verifying the log" in demo.stdout and "all intact" in demo.stdout

    readme_session_runs(eventfold, elsewhere, env)
    streams = run(eventfold, "streams", "--store", "sqlite:///eventfold.db", cwd=elsewhere, env=env)
    assert "order-1001" in streams.stdout and "stock-apple" in streams.stdout
    verified = run(eventfold, "verify", "--store", "sqlite:///eventfold.db", cwd=elsewhere, env=env)
    assert "all intact" in verified.stdout
    run(eventfold, "init", "my-app", cwd=elsewhere, env=env)
    assert (elsewhere / "my-app" / "my_app" / "services.py").is_file()


def test_make_demo_leaves_eventfold_serve_working(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is needed")
    clone = sources(tmp_path / "clone", "Makefile")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    demo = run("make", "demo", cwd=clone, env=env)
    assert "Verifying the log" in demo.stdout and "all intact" in demo.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    readme_session_runs(clone / ".venv" / "bin" / "eventfold", elsewhere, env)
