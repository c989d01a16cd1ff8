"""Writing a new project from the templates in ``template/`` (see
``eventfold.scaffold``)."""

from __future__ import annotations

import keyword
import re
import sys
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from eventfold import __version__
from eventfold.errors import InvalidArgument

_PACKAGE = re.compile(r"[a-z_][a-z0-9_]*")


def package_name(path: Path) -> str:
    """The Python package for a project in ``path``: its folder's name in
    lower case, with anything but letters, digits and ``_`` as ``_``."""
    name = re.sub(r"[^a-z0-9_]", "_", path.resolve().name.lower()).strip("_")
    if name and name[0].isdigit():
        name = f"app_{name}"
    return name


def check_package(name: str) -> str:
    """``name`` if it can be a new top-level package, else ``InvalidArgument``."""
    if not _PACKAGE.fullmatch(name) or keyword.iskeyword(name):
        raise InvalidArgument(
            f"{name!r} is not a package name: lower-case letters, digits and '_'",
            argument="package",
        )
    if name in sys.stdlib_module_names or name in ("eventfold", "tests", "test"):
        raise InvalidArgument(
            f"a package called {name!r} would hide another: choose another with --package",
            argument="package",
        )
    return name


def _templates(folder: Traversable, into: Path) -> list[tuple[Traversable, Path]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _templates(entry, into / entry.name)
        elif entry.name.endswith(".tmpl"):
            found.append((entry, into / entry.name.removesuffix(".tmpl")))
    return found


def scaffold(path: Path, package: str | None = None) -> list[Path]:
    """Write a new application into ``path`` (which must not exist, or be
    empty) and return the files written. ``package`` defaults to
    :func:`package_name`."""
    package = check_package(package if package is not None else package_name(path))
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidArgument(f"{path} exists and is not an empty folder", argument="path")
    values = {
        "{{name}}": path.resolve().name,
        "{{package}}": package,
        "{{eventfold_version}}": __version__,
    }
    root = resources.files("eventfold.scaffold") / "template"
    written = []
    for template, relative in _templates(root, Path()):
        parts = [package if p == "PACKAGE" else p for p in relative.parts]
        if parts[-1] == "gitignore":
            parts[-1] = ".gitignore"
        target = path.joinpath(*parts)
        text = template.read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
