"""How a simulated participant reaches the server: over HTTP, or in-process through Flask.

Both answer :meth:`request` with a :class:`Reply` and leave redirects to the caller;
both keep the participant's cookies and the latency of every request.
"""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import urljoin, urlsplit


class TransportError(RuntimeError):
    """The request got no usable answer (connection lost, server error)."""


@dataclasses.dataclass
class Reply:
    status: int
    url: str
    text: str
    location: str | None


class HttpTransport:
    """``requests`` with redirects left to the client; keeps the participant's cookies."""

    def __init__(self, base_url: str, timeout: float = 30.0, session=None):
        import requests

        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = session or requests.Session()
        self.latencies: list[float] = []
        self._errors = (requests.RequestException,)

    def request(
        self, method: str, url: str, data: dict | None = None, referer: str | None = None
    ) -> Reply:
        full = urljoin(self.base_url, url)
        headers = {"Referer": referer} if referer else {}
        start = time.perf_counter()
        try:
            response = self.session.request(
                method,
                full,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=self.timeout,
            )
        except self._errors as exc:
            raise TransportError(f"{method} {full}: {exc}") from exc
        self.latencies.append(time.perf_counter() - start)
        return Reply(response.status_code, full, response.text, response.headers.get("Location"))


class FlaskTransport:
    """In-process requests through ``app.test_client()`` (cookies kept)."""

    def __init__(self, app, base_url: str = "http://localhost/"):
        from study_server import study_context

        self.client = app.test_client()
        self.study = study_context(app).study  # the study as served, for its answers
        self.base_url = base_url.rstrip("/") + "/"
        self.latencies: list[float] = []

    def request(
        self, method: str, url: str, data: dict | None = None, referer: str | None = None
    ) -> Reply:
        parts = urlsplit(urljoin(self.base_url, url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        start = time.perf_counter()
        response = self.client.open(
            path,
            method=method,
            data=data,
            headers={"Referer": referer} if referer else {},
            base_url=f"{parts.scheme}://{parts.netloc}",
            follow_redirects=False,
        )
        self.latencies.append(time.perf_counter() - start)
        return Reply(
            response.status_code,
            urljoin(self.base_url, path),
            response.get_data(as_text=True),
            response.headers.get("Location"),
        )
