"""Which participants a researcher means: the participant table's filters, search, sort
and page, and the same filters as the rule of a bulk exclusion.

A :class:`Selection` is read from the table's query string (a bad value is one 400 page
naming the parameter and what is allowed) and turned into SQL where clauses, so the
table shows one page of rows (:data:`PAGE_SIZE`) whatever the study's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.sql import ColumnElement

from study_server.http import abort_with
from study_server.live import DURATION_S, cutoff, too_fast
from study_server.models import PID_MAX, Participant
from study_server.study import Study
from xaistudy.vocabulary import ABANDONED, EXCLUDED, Status

PAGE_SIZE = 50
PREVIEW = "preview"
# status filter -> what it shows (the derived statuses as the export derives them)
STATUS_FILTERS = {
    Status.STARTED: "started (active)",
    Status.COMPLETED: "completed",
    Status.SCREENED_OUT: "screened out",
    Status.RETURNED: "returned",
    ABANDONED: "abandoned",
    EXCLUDED: "excluded",
    PREVIEW: "previews",
}
# rule -> what it selects; a bulk exclusion names its rule in the audit trail
RULES = {
    "attention_failed": "failed an attention check",
    "too_fast": "completed too fast",
}
SORTS = {
    "id": Participant.id,
    "prolific_pid": Participant.prolific_pid,
    "condition": Participant.condition,
    "status": Participant.status,
    "page": Participant.page,
    "started": Participant.started_at,
    "last_seen": Participant.last_seen_at,
    "duration": DURATION_S,
}


@dataclasses.dataclass(frozen=True)
class Selection:
    search: str = ""  # part of a Prolific ID
    condition: str = ""
    status: str = ""
    rule: str = ""
    sort: str = "id"
    descending: bool = True
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str], study: Study) -> Selection:
        """The selection a query string (or a posted form) names."""
        search = args.get("q", "").strip()
        if len(search) > PID_MAX:
            abort_with(400, f"The search is longer than a Prolific ID ({PID_MAX} characters).")
        choices = {
            "condition": study.condition_names,
            "status": tuple(STATUS_FILTERS),
            "rule": tuple(RULES),
            "sort": tuple(SORTS),
            "order": ("asc", "desc"),
        }
        values = {}
        for name, allowed in choices.items():
            value = args.get(name, "")
            if value and value not in allowed:
                abort_with(400, f"{name} {value!r} is not one of: {', '.join(allowed)} (or empty).")
            values[name] = value
        page = args.get("page", "1")
        if not page.isdigit() or not 1 <= int(page) <= 10**6:
            abort_with(400, f"page {page!r} is not a page number.")
        return cls(
            search=search,
            condition=values["condition"],
            status=values["status"],
            rule=values["rule"],
            sort=values["sort"] or "id",
            descending=values["order"] != "asc",
            page=int(page),
        )

    @property
    def filtered(self) -> bool:
        """Whether it picks some participants rather than all (a bulk action needs it)."""
        return bool(self.search or self.condition or self.status or self.rule)

    def describe(self) -> str:
        """The filters in words, as the audit trail records a bulk exclusion's rule."""
        parts = []
        if self.rule:
            parts.append(RULES[self.rule])
        if self.status:
            parts.append(f"status {self.status}")
        if self.condition:
            parts.append(f"condition {self.condition}")
        if self.search:
            parts.append(f"Prolific ID containing {self.search!r}")
        return "; ".join(parts) or "all participants"

    def args(self, **changes) -> dict[str, str]:
        """The query string of this selection (with ``changes``), defaults left out."""
        chosen = dataclasses.replace(self, **changes)
        values = {
            "q": chosen.search,
            "condition": chosen.condition,
            "status": chosen.status,
            "rule": chosen.rule,
            "sort": "" if chosen.sort == "id" else chosen.sort,
            "order": "" if chosen.descending else "asc",
            "page": "" if chosen.page == 1 else str(chosen.page),
        }
        return {name: value for name, value in values.items() if value}

    def where(
        self, study: Study, now: datetime, too_fast_s: float | None
    ) -> list[ColumnElement[bool]]:
        """Where clauses on participants; previews only when the status filter asks."""
        clauses: list[ColumnElement[bool]] = [
            Participant.study == study.slug,
            Participant.preview.is_(self.status == PREVIEW),
        ]
        if self.search:
            needle = self.search.lower()
            clauses.append(func.lower(Participant.prolific_pid).contains(needle, autoescape=True))
        if self.condition:
            clauses.append(Participant.condition == self.condition)
        if self.status:
            clauses += _status_clauses(self.status, study, now)
        if self.rule == "attention_failed":
            clauses.append(Participant.attention_passed.is_(False))
        elif self.rule == "too_fast":
            clauses.append(too_fast(too_fast_s))
        return clauses

    def order_by(self) -> list[ColumnElement]:
        column = SORTS[self.sort]
        direction = column.desc() if self.descending else column.asc()
        # NULLs (no duration yet) last either way; the id keeps pages stable.
        tie = Participant.id.desc() if self.descending else Participant.id.asc()
        return [column.is_(None), direction, tie]


def _status_clauses(status: str, study: Study, now: datetime) -> list[ColumnElement[bool]]:
    if status == EXCLUDED:
        return [Participant.excluded.is_(True)]
    if status == PREVIEW:
        return []
    active = Participant.last_seen_at >= cutoff(study, now)
    if status == ABANDONED:
        return [Participant.status == Status.STARTED, ~active]
    if status == Status.STARTED:
        return [Participant.status == Status.STARTED, active]
    return [Participant.status == status]
