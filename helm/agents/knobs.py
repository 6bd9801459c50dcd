"""The environment knobs a training script reads, found by reading its source.

Two styles cover our script and the community's: a dataclass of hyperparameters whose fields
are read from the upper-cased environment variable of the same name (``golf_task``), and
``os.environ.get("KEY", default)`` calls, usually wrapped in ``int(...)``/``float(...)``
(the baseline and most records). Only numbers and booleans are knobs a sweep can turn.
"""

from __future__ import annotations

import ast
import math
import threading
from dataclasses import dataclass

_PARSE = threading.Lock()
"""CPython 3.11's parser is not safe to call from two threads at once (``SystemError: AST
constructor recursion depth mismatch``, seen in bench/early_abort.py); sweep agents may
share a process."""


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type  # int | float | bool
    default: int | float | bool


def _literal(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _infer(value: object, wrapper: str | None) -> Knob | None:
    kinds: dict[str, type] = {"int": int, "float": float, "bool": bool}
    if isinstance(value, str):
        text = value.strip()
        kind = kinds.get(wrapper or "")
        try:
            if kind is None:
                kind = int if text.lstrip("-").isdigit() else float
            value = kind(float(text)) if kind is int else kind(text)
        except ValueError:
            return None
    if isinstance(value, bool):
        return Knob("", bool, value)
    if isinstance(value, int):
        kind = kinds.get(wrapper or "", int)
        return Knob("", kind, kind(value)) if kind in (int, float) else None
    if isinstance(value, float) and math.isfinite(value):
        return Knob("", float, value)
    return None


def _environ_get(call: ast.Call) -> tuple[str, ast.AST] | None:
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr in ("get", "getenv")):
        return None
    owner = f.value
    named = (isinstance(owner, ast.Attribute) and owner.attr == "environ") or (
        isinstance(owner, ast.Name) and owner.id in ("os", "environ")
    )
    if not named or len(call.args) < 2:
        return None
    key = _literal(call.args[0])
    return (key, call.args[1]) if isinstance(key, str) else None


def discover(source: str) -> dict[str, Knob]:
    """Every numeric or boolean knob of ``source``, by environment variable name."""
    try:
        with _PARSE:
            tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, Knob] = {}
    from_env_calls: dict[str, Knob] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            w in node.name.lower() for w in ("hyperparam", "config", "args", "settings")
        ):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and stmt.value is not None
                ):
                    ann = stmt.annotation.id if isinstance(stmt.annotation, ast.Name) else None
                    knob = _infer(_literal(stmt.value), ann)
                    if knob:
                        name = stmt.target.id.upper()
                        found[name] = Knob(name, knob.kind, knob.default)
        elif isinstance(node, ast.Call):
            wrapper = node.func.id if isinstance(node.func, ast.Name) else None
            inner = node.args[0] if wrapper and node.args else None
            target = inner if isinstance(inner, ast.Call) else node
            got = _environ_get(target)
            if got is None:
                continue
            key, default = got
            knob = _infer(_literal(default), wrapper if target is inner else None)
            if knob and key not in from_env_calls:
                from_env_calls[key] = Knob(key, knob.kind, knob.default)
    # A hyperparameter class is the script's declared configuration; loose environ.get calls
    # beside it are plumbing (RANK, WORLD_SIZE ...), so they count only when there is no class.
    return found or from_env_calls


def parse_value(knob: Knob, text: str) -> int | float | bool:
    """A value from ``run.env`` in the knob's type (bools as the script reads them)."""
    if knob.kind is bool:
        return text.strip().lower() in ("1", "true", "yes", "on")
    if knob.kind is int:
        return int(float(text))
    return float(text)


def format_value(value: int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"
