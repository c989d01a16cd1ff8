"""The operations console: a web UI on the query service at ``/console/``,
rendered on the server (Jinja2), every asset in the package. See
docs/console.md and ``eventfold.console.pages``."""

from eventfold.console.pages import console_routes

__all__ = ["console_routes"]
