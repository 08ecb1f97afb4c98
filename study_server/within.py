"""Within-subjects and mixed designs (docs/designs/within-subjects.md): the ``[within]``
table of a learn-then-test study, the Williams squares that order its blocks, and which
of the bundle's scenes each block shows.

Every participant of a group sees each of the group's conditions in a block of its own
(its learning trials, then its test trials), in one of the orders of the group's
Williams square: a Latin square (each condition once in every position) balanced for
first-order carry-over (each condition directly follows each other one equally often).
Between groups the design is between subjects: a group of one condition per group would
be today's between-subjects study, so a group needs at least two.

A participant's cell is (group, order): the assignment balances the cells
(study_server/assignment.py). Blocks never share a scene: the bundle's learning and test
scenes are cut into as many slices as the group has conditions, and a block's slice is
``(the condition's place in the group + the order's row) mod n``, so that across the
square's rows every condition meets every slice equally often (condition and scene set
are not confounded).
"""

from __future__ import annotations

import dataclasses

from xaistudy.errors import UserError


def williams_square(n: int) -> tuple[tuple[int, ...], ...]:
    """The orders of a Williams design over conditions 0..n-1: n rows for even n, 2n for
    odd n (the n rows and their mirror images). Every condition stands once in each
    position of n rows, and each ordered pair of conditions is adjacent in the same number
    of rows (once for even n, twice for odd n)."""
    if n < 2:
        raise ValueError(f"a Williams square needs at least 2 conditions, got {n}")
    # the first row 0, 1, n-1, 2, n-2, ...: its neighbours' differences are all distinct
    # mod n, so its cyclic shifts put every ordered pair side by side once
    first = [0] + [(j + 1) // 2 if j % 2 else n - j // 2 for j in range(1, n)]
    rows = [tuple((c + shift) % n for c in first) for shift in range(n)]
    if n % 2:  # odd n: one cyclic square repeats some pairs; the mirrors add the missing
        rows += [row[::-1] for row in rows]
    return tuple(rows)


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    """Where a participant of a within study is assigned: a group and a row of its
    Williams square (both 1-based, as stored and exported)."""

    group: int
    order: int


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a participant's walk: its condition, its position (``period``,
    1-based) and the slice of the bundle's scenes it shows."""

    period: int
    condition: str
    scene_slice: int  # 0-based: learning scenes [s * L, (s + 1) * L), test likewise


@dataclasses.dataclass(frozen=True)
class Within:
    """``[within]``: the groups of conditions seen within subjects, and how many
    participants each group is to have (a multiple of its number of orders, so that every
    order is walked equally often)."""

    groups: tuple[tuple[str, ...], ...]
    target_n: int  # participants per group

    @property
    def blocks(self) -> int:
        """The most blocks a participant walks (the largest group's size)."""
        return max(len(g) for g in self.groups)

    def orders(self, group: int) -> tuple[tuple[str, ...], ...]:
        """The condition orders of group ``group`` (1-based): its Williams square's rows."""
        names = self.groups[group - 1]
        return tuple(tuple(names[i] for i in row) for row in williams_square(len(names)))

    def cells(self) -> tuple[Cell, ...]:
        return tuple(
            Cell(g, r)
            for g in range(1, len(self.groups) + 1)
            for r in range(1, len(self.orders(g)) + 1)
        )

    def cell_target(self, cell: Cell) -> int:
        """The participants a cell is to have: its group's share per order."""
        return self.target_n // len(self.orders(cell.group))

    def condition_order(self, cell: Cell) -> tuple[str, ...]:
        return self.orders(cell.group)[cell.order - 1]

    def block_plan(self, cell: Cell) -> tuple[Block, ...]:
        """The blocks of a participant of ``cell``, in the order walked; the slice turns
        with the square's row (module docstring)."""
        names = self.groups[cell.group - 1]
        return tuple(
            Block(period, name, (names.index(name) + cell.order - 1) % len(names))
            for period, name in enumerate(self.condition_order(cell), start=1)
        )

    def groups_of(self, condition: str) -> tuple[int, ...]:
        return tuple(g for g, names in enumerate(self.groups, start=1) if condition in names)

    def first_cell(self, condition: str) -> Cell:
        """A cell whose first block is ``condition`` (what a preview of it walks)."""
        return next(c for c in self.cells() if self.condition_order(c)[0] == condition)


def parse_groups(value: object, conditions: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """``[within].groups``: a list of groups, each a list of at least two distinct
    conditions of ``[conditions]``; together they name every one of them."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(g, list) and all(isinstance(c, str) for c in g) for g in value)
    ):
        raise UserError(
            f"study: within.groups = {value!r} must be a list of groups, each a list of "
            'condition names, e.g. [["none", "integrated_gradients"]]'
        )
    for number, group in enumerate(value, start=1):
        if len(group) < 2:
            raise UserError(
                f"study: within.groups group {number} {group!r} has {len(group)} condition: a "
                "Latin square over one condition orders nothing; give each group at least two "
                "(a condition seen alone is a between-subjects group: drop [within] for that)"
            )
        unknown = [c for c in group if c not in conditions]
        if unknown:
            raise UserError(
                f"study: within.groups group {number} names {', '.join(map(repr, unknown))}, "
                f"not a condition of [conditions] ({', '.join(conditions)})"
            )
        repeated = sorted({c for c in group if group.count(c) > 1})
        if repeated:
            raise UserError(
                f"study: within.groups group {number} names {', '.join(map(repr, repeated))} "
                "more than once; each condition is one block of a participant's walk"
            )
    if len({len(g) for g in value}) > 1:
        raise UserError(
            f"study: within.groups have {' and '.join(sorted({str(len(g)) for g in value}))} "
            "conditions; every group needs as many, as every participant walks one block per "
            "condition of their group"
        )
    if len({tuple(g) for g in value}) != len(value):
        raise UserError("study: within.groups repeats a group; each group must differ")
    unseen = [c for c in conditions if not any(c in g for g in value)]
    if unseen:
        raise UserError(
            f"study: condition(s) {', '.join(map(repr, unseen))} of [conditions] are in no "
            "group of within.groups; add them to a group or drop their table"
        )
    return tuple(tuple(g) for g in value)


def check_target(within: Within) -> None:
    """Each group's target is a multiple of its orders: every order walked equally often."""
    for number in range(1, len(within.groups) + 1):
        orders = len(within.orders(number))
        if within.target_n % orders:
            raise UserError(
                f"study: within.target_n = {within.target_n} is not a multiple of {orders}, "
                f"the orders of group {number} (a Williams square over "
                f"{len(within.groups[number - 1])} conditions); each order must be walked "
                "equally often"
            )
