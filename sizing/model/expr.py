"""Block parameters in spec values: ``$name`` or ``${expression}`` with + - * // % / and parentheses.

Evaluated over the scope's integers with Python's ``ast`` (never ``eval``); ``/`` must divide exactly,
so every size stays an exact integer.
"""
from __future__ import annotations

import ast
import operator

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod}

MAX_CHARS = 200


class ExprError(ValueError):
    pass


def substitute(value, scope: dict):
    """``value`` with every ``$name`` / ``${expr}`` string replaced by its value (lists recursively)."""
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    if len(value) > MAX_CHARS:      # also keeps the parser's and _eval's recursion shallow
        raise ExprError(f"'{value[:40]}...' is longer than {MAX_CHARS} characters")
    text = value[2:-1] if value.startswith("${") and value.endswith("}") else value[1:]
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ExprError(f"'{value}' is not an expression; write $name or ${{name * 2}}") from None
    return _eval(tree.body, scope, value)


def _eval(node, scope, src):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, bool)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in scope:
            known = ", ".join(sorted(scope)) or "none"
            raise ExprError(f"'{src}' uses '{node.id}', which is not a parameter here (known: {known})")
        if scope[node.id] is None:      # only seq_len can be unset: required block parameters are checked
            raise ExprError(f"'{src}' uses '{node.id}', which is not set (give defaults.seq_len or --seq-len)")
        return scope[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_int(_eval(node.operand, scope, src), src)
    if isinstance(node, ast.BinOp) and (type(node.op) in _OPS or isinstance(node.op, ast.Div)):
        left, right = _int(_eval(node.left, scope, src), src), _int(_eval(node.right, scope, src), src)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ExprError(f"'{src}' divides by zero")
        if isinstance(node.op, ast.Div):
            if left % right:
                raise ExprError(f"'{src}': {left} / {right} is not a whole number; use // to round down")
            return left // right
        result = _OPS[type(node.op)](left, right)
        if abs(result) > 10 ** 18:
            raise ExprError(f"'{src}' is larger than 10^18")
        return result
    raise ExprError(f"'{src}' may use only integers, parameter names, + - * / // % and parentheses")


def _int(v, src):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ExprError(f"'{src}' does arithmetic on {v!r}, which is not an integer")
    return v
