"""Request checks beyond the forms' CSRF tokens: which proxy to believe, where a post
came from, and the headers every response carries."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from study_server.http import abort_with

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def trusted_proxy_fix(wsgi_app, trusted: str):
    """``wsgi_app`` that believes one hop of X-Forwarded-For/-Proto/-Host only from the
    peers named in ``trusted`` (comma-separated addresses, the reverse proxy's): anyone
    reaching gunicorn directly cannot pick the address the limits count by."""
    peers = {address.strip() for address in trusted.split(",") if address.strip()}
    fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1)

    def app(environ, start_response):
        chosen = fixed if environ.get("REMOTE_ADDR") in peers else wsgi_app
        return chosen(environ, start_response)

    return app


def whole_streamed_body(wsgi_app, max_bytes: int):
    """``wsgi_app`` that reads a body sent without Content-Length (chunked) whole, up to
    ``max_bytes``, before the app sees it: one over the limit is refused with 413
    (:func:`refuse_overlong_body`) instead of being cut at the limit and parsed."""

    def app(environ, start_response):
        if environ.get("CONTENT_LENGTH") or not environ.get("wsgi.input_terminated"):
            return wsgi_app(environ, start_response)
        stream, chunks, size = environ["wsgi.input"], [], 0
        while size <= max_bytes:
            chunk = stream.read(min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            environ["xaistudy.body_too_large"] = True
            chunks = []
        body = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return wsgi_app(environ, start_response)

    return app


def refuse_overlong_body() -> None:
    if request.environ.get("xaistudy.body_too_large"):
        abort_with(413, "What you sent is too large.")


def check_same_origin() -> None:
    """Refuse a post whose Origin or Referer names another site.

    Flask-WTF's own check (WTF_CSRF_SSL_STRICT) refuses every HTTPS post without a Referer,
    which privacy settings and extensions strip: those participants could not answer. The
    CSRF token and the SameSite=Lax cookie already stop cross-site posts; this refuses one
    that says where it came from when that is elsewhere, and lets one that says nothing
    through to the token check. ``Origin: null`` (sent after some redirects) says nothing.
    """
    if request.method not in UNSAFE_METHODS:
        return
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value and value != "null" and urlsplit(value).netloc != request.host:
            abort_with(
                400,
                "This form was not sent from this site. Please go back to the study page, "
                "reload it and try again.",
            )


def content_security_policy(scripts: str = "'none'") -> str:
    """The pages' policy: everything from this site only, and no script at all except
    where ``scripts`` allows (the researcher's dashboard runs its own refresh script)."""
    return (
        f"default-src 'self'; img-src 'self'; style-src 'self'; script-src {scripts}; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


def security_headers(app: Flask, response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # same-origin: other sites never see the study's URLs (which carry Prolific IDs).
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    if request.is_secure and not app.debug:
        # Browsers that saw the study over HTTPS never try plain HTTP for it again.
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
