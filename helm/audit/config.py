"""What configuration a PR's code runs with: its defaults, plus what the PR says it set.

Both the static checks ("would this code have printed these hyperparameters?") and the
reproduction ("run it the way its author did") need the same answer, so it lives here.

- The code's defaults are read with ``ast``, without running anything: every
  ``os.environ.get("NAME", default)`` / ``os.getenv`` call with a literal default (the
  baseline's style), and the literal fields of a ``Hyperparameters``-like class (helm's
  style, where each field is overridden by its upper-cased name).
- The stated configuration is what the PR writes down: an ``env``/``config`` object of
  NAME: value in ``submission*.json``, or ``NAME=value`` assignments in the README's code
  (fenced blocks and inline code, as in ``NUM_LAYERS=11 torchrun ... train_gpt.py``). Only
  names the code reads (and thread counts) are kept, so prose or ``NCCL_*`` never leak in, and
  machine-specific paths (data, tokenizer, run id) are dropped: the box supplies those.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

MACHINE_KEYS = frozenset({"DATA_PATH", "TOKENIZER_PATH", "RUN_ID", "LOG_DIR", "DATA_DIR"})
# Read by the runtime, not the script, yet they decide a CPU run's numerics and speed.
RUNTIME_KEYS = frozenset({"OMP_NUM_THREADS", "MKL_NUM_THREADS"})
_CLASS_HINTS = ("hyperparam", "config", "args", "settings")
_JSON_KEYS = ("env", "config", "environment", "run_env")
_FENCE_RE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_INLINE_RE = re.compile(r"`([^`\n]+)`")
_ASSIGN_RE = re.compile(r"(?<![\w$])([A-Z][A-Z0-9_]{1,63})=(\"[^\"]*\"|'[^']*'|[^\s`'\";|&]+)")


@dataclass
class CodeConfig:
    """The environment names a script reads and the defaults it falls back to (lower-case)."""

    defaults: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # upper-case env names the code reads
    parsed: bool = True

    def reads(self, name: str) -> bool:
        return name.upper() in self.names or name.lower() in self.defaults


def _literal(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        return str(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal(node.operand)
        return f"-{inner}" if inner is not None else None
    return None


def _is_env_get(func: ast.AST) -> bool:
    if isinstance(func, ast.Attribute) and func.attr == "getenv":
        return True
    if isinstance(func, ast.Attribute) and func.attr == "get":
        base = func.value
        return (isinstance(base, ast.Attribute) and base.attr == "environ") or (
            isinstance(base, ast.Name) and base.id == "environ"
        )
    return False


def code_config(source: str | bytes) -> CodeConfig:
    """Defaults and environment names of a script; empty (``parsed=False``) if it won't parse."""
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    cfg = CodeConfig()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        cfg.parsed = False
        return cfg
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_env_get(node.func) and node.args:
            name = _literal(node.args[0])
            if name is None:
                continue
            cfg.names.add(name.upper())
            default = _literal(node.args[1]) if len(node.args) > 1 else None
            if default is not None:
                cfg.defaults.setdefault(name.lower(), default)
        elif isinstance(node, ast.ClassDef) and any(h in node.name.lower() for h in _CLASS_HINTS):
            for stmt in node.body:
                target, value = None, None
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    target, value = stmt.target.id, stmt.value
                elif (
                    isinstance(stmt, ast.Assign)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                ):
                    target, value = stmt.targets[0].id, stmt.value
                literal = _literal(value)
                if target is not None and literal is not None:
                    cfg.defaults.setdefault(target.lower(), literal)
                    cfg.names.add(target.upper())
    return cfg


def _json_config(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(folder.glob("submission*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for key in _JSON_KEYS:
            block = data.get(key)
            if isinstance(block, dict):
                for name, value in block.items():
                    if isinstance(value, str | int | float | bool) and isinstance(name, str):
                        out.setdefault(name.upper(), str(value))
    return out


def _readme_config(folder: Path) -> dict[str, str]:
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    snippets = _FENCE_RE.findall(text)
    snippets += _INLINE_RE.findall(_FENCE_RE.sub("", text))
    out: dict[str, str] = {}
    for snippet in snippets:
        for name, value in _ASSIGN_RE.findall(snippet):
            out[name] = value.strip("\"'")
    return out


def stated_config(folder: Path, code: CodeConfig | None) -> dict[str, str]:
    """Environment the PR says it ran with (JSON wins over README), for names the code reads."""
    stated = {**_readme_config(folder), **_json_config(folder)}
    keep = {}
    for name, value in stated.items():
        if name in MACHINE_KEYS or name == "SEED":
            continue
        if name not in RUNTIME_KEYS and code is not None and code.parsed and not code.reads(name):
            continue
        keep[name] = value
    return dict(sorted(keep.items()))


def effective(code: CodeConfig, stated: dict[str, str]) -> dict[str, str]:
    """The settings the code would run with (lower-case names, as logs print them)."""
    return {**code.defaults, **{k.lower(): v for k, v in stated.items()}}


def same_value(a: str, b: str) -> bool:
    """Logged and configured values as equal as a script would make them (``1``/``True``)."""
    na, nb = _norm(a), _norm(b)
    return na == nb


def _norm(value: str) -> str | float:
    v = value.strip().strip("\"'").lower()
    if v in ("true", "false"):
        return 1.0 if v == "true" else 0.0
    try:
        return float(v)
    except ValueError:
        return v
