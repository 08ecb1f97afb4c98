"""A participant that walks the whole study through HTTP or in-process, as a person would.

Used by ``bench/load.py``, the tests and the analysis's simulations::

    client = ParticipantClient(HttpTransport("http://127.0.0.1:5000"), prolific_pid="P123",
                               study_id="S1", session_id="X1")
    result = client.run(answer=lambda attribute_key, condition: (4, "the arms move"))

It reads each page's form (hidden fields with the CSRF token and revision, radio groups,
text areas) with :mod:`html.parser`, posts to the form's own action, follows the
server's redirects, and raises :class:`FlowError` when a page is not what the flow
expects. Over HTTP it survives dropped connections and server errors by reopening the
entry link, which resumes at the server's page pointer.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from study_server.study import Study, load_study

AnswerFn = Callable[[str, str], tuple[int, str]]


class FlowError(RuntimeError):
    """The server showed a page the participant flow did not expect."""


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
        self.client = app.test_client()
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


@dataclasses.dataclass
class ParsedPage:
    meta: dict[str, str]
    action: str | None = None
    hidden: dict[str, str] = dataclasses.field(default_factory=dict)
    radios: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    legends: dict[str, str] = dataclasses.field(default_factory=dict)
    textareas: list[str] = dataclasses.field(default_factory=list)
    selects: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)  # other input types
    code: str | None = None
    alerts: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.meta.get("xaistudy-page", "")


class _PageParser(HTMLParser):
    """Collects the first POST form of a page, its fields and their labels."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage(meta={})
        self._in_form = False
        self._form_done = False
        self._legend: list[str] | None = None
        self._current_legend = ""
        self._fieldset_radios: list[str] = []
        self._label_for: tuple[str, str] | None = None  # (radio name, value) awaiting text
        self._label_text: list[str] = []
        self._select: str | None = None
        self._capture: str | None = None  # "code" | "alert"
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        page = self.page
        if tag == "meta" and a.get("name", "").startswith("xaistudy-"):
            page.meta[a["name"]] = a.get("content", "")
        elif tag == "form" and a.get("method", "").lower() == "post" and not self._form_done:
            self._in_form = True
            page.action = a.get("action") or None
        elif tag in ("p", "span", "div") and a.get("id") == "completion-code":
            self._capture, self._text = "code", []
        elif tag == "p" and "error" in a.get("class", "").split():
            self._capture, self._text = "alert", []
        if not self._in_form:
            return
        if tag == "legend":
            self._legend = []
        elif tag == "fieldset":
            self._current_legend = ""
        elif tag == "input":
            kind, name = a.get("type", "text").lower(), a.get("name", "")
            if kind == "hidden":
                page.hidden[name] = a.get("value", "")
            elif kind == "radio":
                page.radios.setdefault(name, [])
                page.legends.setdefault(name, self._current_legend)
                self._label_for, self._label_text = (name, a.get("value", "")), []
            elif name:
                page.inputs[name] = kind
        elif tag == "textarea":
            page.textareas.append(a.get("name", ""))
        elif tag == "select":
            self._select = a.get("name", "")
            page.selects[self._select] = []
        elif tag == "option" and self._select is not None:
            page.selects[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "legend" and self._legend is not None:
            self._current_legend = " ".join("".join(self._legend).split())
            self._legend = None
        elif tag == "label" and self._label_for is not None:
            name, value = self._label_for
            self.page.radios[name].append((value, " ".join("".join(self._label_text).split())))
            self._label_for = None
        elif tag == "select":
            self._select = None
        elif tag == "form" and self._in_form:
            self._in_form, self._form_done = False, True
        elif tag in ("p", "span", "div") and self._capture:
            text = " ".join("".join(self._text).split())
            if self._capture == "code":
                self.page.code = text
            else:
                self.page.alerts.append(text)
            self._capture = None

    def handle_data(self, data):
        if self._legend is not None:
            self._legend.append(data)
        if self._label_for is not None:
            self._label_text.append(data)
        if self._capture:
            self._text.append(data)


def parse_page(html: str) -> ParsedPage:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


def parse_step(html: str) -> ParsedPage:
    """:func:`parse_page` of what the walk reads: the head and the post form onwards.

    The content between ``<main>`` and the form (explanation grids with hundreds of
    images on a real bundle) names no field, meta or completion code, so it is skipped
    unparsed; a page without a form is parsed whole.
    """
    main = html.find("<main")
    form = html.find("<form", main) if main >= 0 else -1
    return parse_page(html if form < 0 else html[:main] + html[form:])


def choose_option(study: Study, page: ParsedPage, name: str, mode: str) -> str:
    """The option a participant who read the study would pick (``mode`` pass) or a wrong one.

    Comprehension answers come from the study definition (what the tutorial teaches);
    attention checks name their answer in quotes.
    """
    options = page.radios[name]
    question = page.legends.get(name, "")
    correct = None
    for q in (*study.comprehension, *study.attention_checks):
        if q.question == question:
            correct = q.correct
    if correct is None:
        named = [v for v, label in options if f'"{label}"' in question]
        correct = named[0] if named else None
    if correct is None:
        raise FlowError(f"cannot answer the question {question!r} on page {page.name}")
    if mode == "pass":
        return correct
    return next(v for v, _ in options if v != correct)


@dataclasses.dataclass
class RunResult:
    condition: str | None = None
    completion_code: str | None = None
    status: str | None = None  # completed | screened_out | returned
    requests: int = 0
    pages: list[str] = dataclasses.field(default_factory=list)
    # attribute -> (rating, reason) for every rating post the server acknowledged
    acknowledged: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)
    retries: int = 0


_END = {"complete": "completed", "screened-out": "screened_out", "declined": "returned"}


class ParticipantClient:
    """One simulated participant; see the module docstring."""

    def __init__(
        self,
        transport,
        prolific_pid: str,
        study_id: str = "S1",
        session_id: str = "X1",
        study: Study | None = None,
        max_retries: int = 30,
        retry_wait_s: float = 0.2,
    ):
        self.transport = transport
        self.entry_url = "/?" + urlencode(
            {"PROLIFIC_PID": prolific_pid, "STUDY_ID": study_id, "SESSION_ID": session_id}
        )
        self.study = study or load_study(None)
        self.max_retries = max_retries
        self.retry_wait_s = retry_wait_s

    # -- requests ------------------------------------------------------------------------
    def _send(
        self,
        result: RunResult,
        method: str,
        url: str,
        data: dict | None = None,
        referer: str | None = None,
    ) -> Reply:
        result.requests += 1
        # Like a browser, a form post names the page it came from (Flask-WTF checks the
        # Referer on HTTPS).
        reply = self.transport.request(method, url, data, referer=referer)
        if reply.status >= 500:
            raise TransportError(f"{method} {url}: server error {reply.status}")
        return reply

    def _follow(self, result: RunResult, reply: Reply) -> Reply:
        for _ in range(10):
            if reply.status not in (301, 302, 303, 307, 308):
                return reply
            reply = self._send(result, "GET", urljoin(reply.url, reply.location))
        raise FlowError(f"too many redirects at {reply.url}")

    # -- answering -----------------------------------------------------------------------
    def _fill(self, page: ParsedPage, result: RunResult, answer: AnswerFn, options: dict) -> dict:
        data = dict(page.hidden)
        kind = (
            re.sub(r"-.*$", "", page.name)
            if page.name.startswith(("rating-", "attention-"))
            else page.name
        )
        if kind == "consent":
            data["consent"] = "yes" if options["consent"] else "no"
        elif kind == "comprehension":
            for name in page.radios:
                data[name] = choose_option(self.study, page, name, options["comprehension"])
        elif kind == "attention":
            for name in page.radios:
                data[name] = choose_option(self.study, page, name, options["attention"])
        elif kind == "rating":
            key = page.meta.get("xaistudy-attribute")
            if not key or "rating" not in page.radios or "reason" not in page.textareas:
                raise FlowError(f"rating page {page.name} lacks its attribute or fields")
            rating, reason = answer(key, result.condition)
            data["rating"], data["reason"] = str(rating), reason
        elif kind == "demographics":
            given = options["demographics"] or {}
            for name in ("age", "gender", "ml_experience"):
                data[name] = str(given.get(name, "") or "")
        elif kind not in ("intro", "tutorial", "explanations"):
            raise FlowError(f"unexpected page {page.name!r}")
        return data

    # -- the walk ------------------------------------------------------------------------
    def run(
        self,
        answer: AnswerFn,
        attention: str = "pass",
        demographics: dict[str, Any] | None = None,
        comprehension: str = "pass",
        consent: bool = True,
        stop_after: str | None = None,
    ) -> RunResult:
        """Walk from the entry link to an end page; ``stop_after`` leaves after that page.

        ``attention``/``comprehension``: ``"pass"`` answers correctly, ``"fail"`` wrongly.
        """
        for mode in (attention, comprehension):
            if mode not in ("pass", "fail"):
                raise ValueError(f"attention/comprehension must be 'pass' or 'fail', got {mode!r}")
        options = {
            "attention": attention,
            "comprehension": comprehension,
            "demographics": demographics,
            "consent": consent,
        }
        result = RunResult()
        failures = 0
        reply = None
        while True:
            try:
                if reply is None:
                    reply = self._follow(result, self._send(result, "GET", self.entry_url))
                if reply.status != 200:
                    raise FlowError(f"GET {reply.url} answered {reply.status}: {reply.text[:300]}")
                page = parse_step(reply.text)
                result.condition = page.meta.get("xaistudy-condition", result.condition)
                if not result.pages or result.pages[-1] != page.name:
                    result.pages.append(page.name)
                if page.name in _END:
                    result.status = _END[page.name]
                    result.completion_code = page.code
                    return result
                if page.action is None and not page.hidden:
                    raise FlowError(f"page {page.name!r} at {reply.url} has no form")
                data = self._fill(page, result, answer, options)
                post = self._send(
                    result,
                    "POST",
                    urljoin(reply.url, page.action or reply.url),
                    data,
                    referer=reply.url,
                )
                if post.status == 400:
                    alerts = "; ".join(parse_page(post.text).alerts) or post.text[:300]
                    raise FlowError(f"page {page.name!r} refused the answers: {alerts}")
                if post.status not in (302, 303):
                    raise FlowError(f"POST on page {page.name!r} answered {post.status}")
                if page.name.startswith("rating-"):
                    key = page.meta["xaistudy-attribute"]
                    result.acknowledged[key] = (int(data["rating"]), data["reason"])
                if stop_after is not None and page.name == stop_after:
                    result.status = "started"
                    return result
                reply = self._follow(result, post)
            except TransportError:
                failures += 1
                result.retries += 1
                if failures > self.max_retries:
                    raise
                time.sleep(self.retry_wait_s)
                reply = None  # reopen the entry link: the server knows where we were
