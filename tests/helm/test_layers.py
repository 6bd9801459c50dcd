"""helm's import graph, built from the source: no cycles, and layers as docs/ARCHITECTURE.md says.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy
import is still a dependency, and a cycle hidden in a function is still a cycle. The layer
order is read from the ``layers`` block of docs/ARCHITECTURE.md, so the document and the code
cannot drift apart. Also here: the store's one query layer (no SQL text and no ORM statements
outside ``helm/models/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("helm", "golf_task")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for base in PACKAGES:
        for path in (REPO / base).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the helm/golf_task modules it imports (``from pkg import mod`` -> pkg.mod)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {r for a in node.names if (r := _resolve(a.name, mods))}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in mods else _resolve(base, mods)
                    if target:
                        deps.add(target)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def documented_layers() -> list[list[str]]:
    """The ``layers`` block of docs/ARCHITECTURE.md: top line first, one or more per line."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    lines = [ln.split("#", 1)[0].split() for ln in block.group(1).splitlines()]
    return [ln for ln in lines if ln]


def _unit(module: str, units: set[str]) -> str | None:
    """The documented unit (package or module) a module belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in units:
            return ".".join(parts[:n])
    return None


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_lazy_cycle() -> None:
    """The checker itself: a two-module loop and a three-module loop are both reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_every_import_follows_the_documented_layers() -> None:
    layers = documented_layers()
    rank = {unit: i for i, line in enumerate(layers) for unit in line}
    graph = import_graph()
    unplaced = sorted(m for m in graph if m not in ("helm",) and _unit(m, set(rank)) is None)
    assert unplaced == [], "modules in no documented layer"
    wrong = []
    for module, deps in graph.items():
        src = _unit(module, set(rank))
        for dep in deps:
            dst = _unit(dep, set(rank))
            if src is None or dst is None or src == dst:
                continue
            if rank[dst] <= rank[src]:  # same line (beside) or above: against the layers
                wrong.append(f"{module} -> {dep}")
    assert sorted(wrong) == []


# SQL keywords are written upper-case in helm; prose ("select a run") is not SQL.
_SQL = re.compile(
    r"""["'][^"'\n]*\b(SELECT\s+(\*|\w+[\s,.(])|INSERT\s+INTO|UPDATE\s+\w+\s+SET"""
    r"""|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE|PRAGMA\s+\w)"""
)
_ORM = re.compile(
    r"\b(session|s)\.(exec|add|delete|execute|query|merge|scalars?)\("
    r"|\b(session|s)\.get\(\s*[A-Z]|\bselect\(\s*[A-Z]\w*"
    r"|\bcol\(\w+\.\w+\)|\btext\(\s*[\"']"
    r"|from (sqlmodel|sqlalchemy) import .*\b(select|col|text|insert|update|delete|func)\b"
)


def _outside_models() -> list[Path]:
    files = []
    for base in PACKAGES:
        files += [
            p
            for p in (REPO / base).rglob("*.py")
            if "helm/models/" not in p.as_posix() and p.name != "train_gpt.py"
        ]
    return sorted(files)


def test_no_sql_text_outside_the_query_layer() -> None:
    """Every statement that touches the store lives in helm/models/, as a named function."""
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in _outside_models()
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _SQL.search(line)
    ]
    assert hits == []


def test_no_orm_statements_outside_the_query_layer() -> None:
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in _outside_models()
        if p.parts[-3:-1] != ("golf_task",)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _ORM.search(line)
    ]
    assert hits == []


def test_the_sql_and_orm_detectors_see_what_they_must() -> None:
    assert _SQL.search("""db.rows("SELECT id FROM run WHERE x", {})""")
    assert _SQL.search("""sql = 'UPDATE agent SET desired = :d'""")
    assert _SQL.search('''"INSERT INTO feed_post (agent) VALUES (:a)"''')
    assert not _SQL.search("help='select a run to pin'")
    assert _ORM.search("hosts = list(s.exec(select(Host)))")
    assert _ORM.search("job = session.get(Job, job_id)")
    assert not _ORM.search("self.query_one(Input).value")
    assert not _ORM.search('runs = int(s.get("runs") or 0)')
    assert _ORM.search("from sqlmodel import Session, select")
    assert not _ORM.search("from sqlmodel import Session  # a transaction handle, typed")
