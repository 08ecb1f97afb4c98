"""Small arithmetic expressions over scene attributes, evaluated vectorized with numpy.

Bias specifications let a distribution parameter depend on other attributes, e.g.
``high = "clip(0.25 + 2.5*(arm_position - 0.5), 0, 1)"``. Expressions are parsed with
:mod:`ast` and only a whitelist of nodes is accepted (names, numbers, ``+ - * / **``,
unary ``-``/``+``, comparisons ``< <= > >=`` and the functions below); nothing is ever
passed to ``eval``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping

import numpy as np

from xaistudy.errors import UserError

FUNCTIONS = {
    "clip": (np.clip, 3),
    "min": (np.minimum, 2),
    "max": (np.maximum, 2),
    "abs": (np.abs, 1),
    "where": (np.where, 3),
}
CONSTANTS = {"pi": math.pi}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}


class Expression:
    """A parsed expression; :attr:`names` are the variables it reads.

    Example::

        expr = Expression("clip(0.25 + 2.5*(arm_position - 0.5), 0, 1)", {"arm_position"})
        expr.evaluate({"arm_position": np.array([0.5, 0.9])})  # -> array([0.25, 1.0])
    """

    def __init__(self, source: str, allowed_names: set[str] | frozenset[str], where: str = ""):
        self.source = source
        self._where = f"{where}: " if where else ""
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise UserError(
                f"{self._where}cannot parse expression {source!r} ({exc.msg}); it must be "
                "arithmetic over attribute names, e.g. 'clip(2.5*(arm_position - 0.5), 0, 1)'"
            ) from None
        self.names: set[str] = set()
        self._check(tree.body, frozenset(allowed_names))
        self._tree = tree.body

    def _fail(self, what: str, allowed_names: frozenset[str]) -> None:
        raise UserError(
            f"{self._where}{what} in expression {self.source!r}; allowed are numbers, "
            f"the names {', '.join(sorted(allowed_names | set(CONSTANTS)))}, + - * / **, "
            f"comparisons < <= > >= and the functions {', '.join(FUNCTIONS)}"
        )

    def _check(self, node: ast.AST, allowed: frozenset[str]) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                self._fail(f"constant {node.value!r} is not a number", allowed)
        elif isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return
            if node.id not in allowed:
                self._fail(f"unknown name {node.id!r}", allowed)
            self.names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            self._check(node.left, allowed)
            self._check(node.right, allowed)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            self._check(node.operand, allowed)
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                self._fail("only single comparisons < <= > >= are allowed", allowed)
            self._check(node.left, allowed)
            self._check(node.comparators[0], allowed)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", ast.unparse(node.func))
                self._fail(f"unknown function {name!r}", allowed)
            _, n_args = FUNCTIONS[node.func.id]
            if node.keywords or len(node.args) != n_args:
                self._fail(f"{node.func.id}() takes exactly {n_args} positional arguments", allowed)
            for arg in node.args:
                self._check(arg, allowed)
        else:
            self._fail(f"'{ast.unparse(node)}' is not allowed", allowed)

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray | float:
        """Evaluate with ``values[name]`` arrays of one shape (N,); returns (N,) or a scalar."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._eval(self._tree, values)

    def _eval(self, node: ast.AST, values: Mapping[str, np.ndarray]):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            return np.asarray(values[node.id], dtype=float)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](
                self._eval(node.left, values), self._eval(node.right, values)
            )
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, values))
        if isinstance(node, ast.Compare):
            return _COMPARE[type(node.ops[0])](
                self._eval(node.left, values), self._eval(node.comparators[0], values)
            )
        function, _ = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return function(*(self._eval(arg, values) for arg in node.args))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"
