"""Secrets come from an environment variable or a file, never from a command
line (where ``ps`` and shell history show them) and never into a log:
``redact`` takes the password out of a URL before it is shown."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eventfold.errors import ConfigurationError


def read_secret(*, env: str | None = None, file: str | Path | None = None) -> str | None:
    """The secret in file ``file`` (surrounding whitespace dropped), else in
    the environment variable ``env``; None if neither is given or set."""
    if file is not None:
        try:
            text = Path(file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the secret file {file}: {exc}") from None
        if not text:
            raise ConfigurationError(f"the secret file {file} is empty")
        return text
    if env is not None:
        value = os.environ.get(env, "").strip()
        return value or None
    return None


def hex_key(text: str | None, what: str) -> bytes | None:
    if text is None:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigurationError(f"{what} must be hex", setting=what) from None


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (each of a comma-separated list)."""
    return ",".join(_redact_one(u) for u in url.split(","))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    shown = f"{user}:***@{host}" if parts.password is not None else f"***@{host}"
    return urlunsplit(parts._replace(netloc=shown))
