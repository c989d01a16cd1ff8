"""``eventfold init``: the project it makes passes its own tests, lint and
strict type checks, and its README's commands work as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventfold.cli import app
from tests.integration.test_http_serve import serving

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def readme_blocks(project: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (project / "README.md").read_text(), flags=re.S)


def test_a_new_project_passes_its_own_checks_and_serves(tmp_path: Path) -> None:
    project = tmp_path / "lending-desk"
    made = CliRunner().invoke(app, ["init", str(project)], env={"COLUMNS": "200"})
    assert made.exit_code == 0, made.output
    assert "eventfold serve --app lending_desk.services:service" in made.output
    package = project / "lending_desk"
    for name in ("events.py", "tasks.py", "read_models.py", "services.py"):
        assert (package / name).is_file(), name
    assert (project / ".gitignore").is_file() and (project / "tests" / "test_tasks.py").is_file()

    # The README's first block: its two commands.
    two = [line.split("#")[0].strip() for line in readme_blocks(project)[0].splitlines()]
    assert two == ["python -m pytest", "eventfold serve --app lending_desk.services:service"]

    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout
    for check in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        checked = run(str(BIN / check[0]), *check[1:], cwd=project)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("curl and bash are needed to run the README's session")
    with serving("--app", "lending_desk.services:service", cwd=project) as served:
        script = readme_blocks(project)[1]
        script = script.replace("localhost:8000", served.command.removeprefix("http://"))
        script = script.replace("localhost:8001", served.query.removeprefix("http://"))
        session = run("bash", "-euo", "pipefail", "-c", script, cwd=project)
        assert session.returncode == 0, session.stderr
        assert '"rows":[{"task_id":"t1","title":"Try eventfold","status":"done"}]' in session.stdout
        assert '"type":"TaskCompleted"' in session.stdout
    assert (project / "eventfold.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--package", "os"], "would hide another"),
        (["--package", "Not-A-Name"], "is not a package name"),
    ],
)
def test_bad_package_names_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    refused = CliRunner().invoke(app, ["init", str(tmp_path / "p"), *args])
    assert refused.exit_code == 2 and message in refused.output
    assert not (tmp_path / "p").exists()


def test_a_folder_with_something_in_it_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    refused = CliRunner().invoke(app, ["init", str(tmp_path)], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "not an empty folder" in refused.output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
