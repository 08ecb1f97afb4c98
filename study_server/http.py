"""Ending a request with a readable 4xx page."""

from __future__ import annotations

from typing import NoReturn

from werkzeug.exceptions import default_exceptions


def abort_with(code: int, message: str) -> NoReturn:
    """Raise the HTTP error ``code``; the error page shows ``message`` to the visitor."""
    exc = default_exceptions[code](description=message)
    exc._xaistudy_message = True
    raise exc
