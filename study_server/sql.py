"""SQL that SQLite and PostgreSQL speak alike: seconds between two times, medians.

Both are computed in the database, so the researcher's live view over thousands of
participants sends a few rows to Python instead of every page visit.
"""

from __future__ import annotations

from sqlalchemy import Float, and_, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import FunctionElement, Select


class seconds_between(FunctionElement):  # noqa: N801 (used like a SQL function)
    """``seconds_between(start, end)``: the seconds from ``start`` to ``end`` (a float)."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element, compiler, **kw):
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element, compiler, **kw):
    start, end = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


def medians(value: ColumnElement, groups: list[ColumnElement], *where) -> Select:
    """``SELECT <groups>, median(value), count`` over the rows matching ``where``.

    The median of n values is the mean of the values ranked (n + 1) // 2 and
    (n + 2) // 2 (one value for odd n, the two middle ones for even n): window
    functions both backends have, where only PostgreSQL has ``percentile_cont``.
    """
    ranked = (
        select(
            *groups,
            value.label("value"),
            func.row_number().over(partition_by=groups, order_by=value).label("rank"),
            func.count().over(partition_by=groups).label("n"),
        )
        .where(value.is_not(None), *where)
        .subquery()
    )
    keys = [ranked.c[g.key] for g in groups]
    middle = and_(
        ranked.c.rank >= (ranked.c.n + 1) // 2,
        ranked.c.rank <= (ranked.c.n + 2) // 2,
    )
    return (
        select(*keys, func.avg(ranked.c.value).label("median"), func.max(ranked.c.n).label("n"))
        .where(middle)
        .group_by(*keys)
    )
