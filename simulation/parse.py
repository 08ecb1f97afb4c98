"""Reading a study page as a participant's browser would: its form, fields and labels.

:func:`parse_step` reads what the walk needs (the page's meta tags, the first POST form
with its hidden fields, radio groups with their legends and labels, text areas and
selects, the completion code and error alerts) with :mod:`html.parser`.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser


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
    panels: dict[str, str] = dataclasses.field(default_factory=dict)  # letter -> image URL

    @property
    def name(self) -> str:
        return self.meta.get("xaistudy-page", "")

    @property
    def kind(self) -> str:
        """The page's kind (study_server.pages), which says what its form asks."""
        return self.meta.get("xaistudy-kind", "")


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
        elif tag == "img" and a.get("data-panel"):
            page.panels[a["data-panel"]] = a.get("src", "")
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
    unparsed, but for a trial's scene (its distinction panels); a page without a form is
    parsed whole.
    """
    main = html.find("<main")
    form = html.find("<form", main) if main >= 0 else -1
    if form < 0:
        return parse_page(html)
    scene = html.find('<div class="trial-scene', main, form)
    return parse_page(html[:main] + (html[scene:form] if scene >= 0 else "") + html[form:])
