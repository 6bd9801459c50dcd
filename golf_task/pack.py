"""The self-extracting form of a training script: the bytes a submission ships as code.

    python -m golf_task.pack SCRIPT [-o OUT]          # write the packed form (stdout: -)
    python -m golf_task.pack --unpack PACKED [-o OUT]  # recover the readable source

The competition counts ``train_gpt.py``'s bytes, so records ship it compressed (lzma +
base85) inside a three-line wrapper that decompresses and runs it. The script logs the size
of that form (``Code size: N bytes`` with ``PACK_CODE=1``), so whoever ships a folder must ship
exactly that form, and whoever checks one must recognise it.

There is one definition of the form: ``pack_source`` in ``golf_task/train_gpt.py`` (or in
the script being packed, if it carries its own). It is taken from the file's source with
``ast`` and run alone, so reading it needs no torch. ``unpack`` does not re-implement it
either: it checks that a file has the shape ``pack_source`` gives (every node but the payload
string equal) and then runs the wrapper itself with ``exec`` and ``compile`` intercepted, so
what it returns is exactly what the wrapper would execute.
"""

from __future__ import annotations

import argparse
import ast
import base64
import builtins
import functools
import lzma
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BUNDLED = Path(__file__).with_name("train_gpt.py")
PACKER = "pack_source"
SOURCE_GLOBAL = "_HELM_SOURCE"  # where the packed form leaves its readable source
# The name records give the readable copy they ship beside the packed train_gpt.py.
READABLE_NAME = "train_gpt_human.py"

Packer = Callable[[str], str]


class PackError(ValueError):
    """No usable ``pack_source``: the script defines none, or it does not return text."""


def source_text(data: bytes) -> str:
    """A script's text as it reads itself (``Path.read_text``: UTF-8, universal newlines),
    which is the text its ``pack_source`` packs and its log counts."""
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def defines_packer(source: str) -> bool:
    """Whether ``source`` has a top-level ``def pack_source`` (without running anything)."""
    try:
        return _packer_def(ast.parse(source)) is not None
    except (SyntaxError, ValueError):
        return False


def _packer_def(tree: ast.Module) -> ast.FunctionDef | None:
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == PACKER]
    return defs[-1] if defs else None  # the last definition is the one a module ends with


def load_packer(source: str | None = None, *, where: str | None = None) -> Packer:
    """``pack_source`` from a script's text (default: the bundled ``train_gpt.py``).

    Only the function is compiled, with ``lzma`` and ``base64`` in its namespace: the rest
    of the script (torch and all) is never imported. Raises PackError when there is none.
    """
    if source is None:
        return _bundled()
    return _compile_packer(source, where or "<script>")


@functools.lru_cache(maxsize=1)
def _bundled_cached(mtime_ns: int) -> Packer:
    del mtime_ns  # the cache key: a rewritten train_gpt.py is read again
    return _compile_packer(BUNDLED.read_text(encoding="utf-8"), str(BUNDLED))


def _bundled() -> Packer:
    return _bundled_cached(BUNDLED.stat().st_mtime_ns)


def _compile_packer(source: str, where: str) -> Packer:
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise PackError(f"{where} does not parse: {exc.msg} (line {exc.lineno})") from exc
    node = _packer_def(tree)
    if node is None:
        raise PackError(f"{where} defines no top-level {PACKER}(code: str) -> str")
    module = ast.Module(body=[node], type_ignores=[])
    # annotations stay strings (``from __future__ import annotations`` binds the feature)
    flags = annotations.compiler_flag
    code = compile(module, where, "exec", flags=flags, dont_inherit=True)
    namespace: dict = {"lzma": lzma, "base64": base64, "__name__": "golf_task.pack.packer"}
    exec(code, namespace)
    fn = namespace[PACKER]

    def packer(text: str) -> str:
        out = fn(text)
        if not isinstance(out, str):
            raise PackError(f"{where}'s {PACKER} returned {type(out).__name__}, not str")
        return out

    return packer


def packer_for(source: str) -> Packer:
    """The packer a script uses on itself: its own ``pack_source`` if it has one (an agent
    may have changed it; its log counted that one's output), else the bundled one."""
    return load_packer(source) if defines_packer(source) else load_packer()


def pack(source: str, packer: Packer | None = None) -> str:
    """The packed form of ``source`` (by default with the packer it would use on itself)."""
    return (packer or packer_for(source))(source)


def packed_size(source: str, packer: Packer | None = None) -> int:
    """The code bytes the script logs for ``source`` with ``PACK_CODE=1``."""
    return len(pack(source, packer).encode("utf-8"))


# ---------------------------------------------------------------------------- unpacking


@dataclass(frozen=True)
class _Shape:
    """What every output of one packer looks like: its AST dump with the payload blanked."""

    dump: str
    n_nodes: int
    slot: int  # index in ast.walk order of the string constant that carries the payload


def _blank(tree: ast.Module, slot: int) -> str:
    node = list(ast.walk(tree))[slot]
    assert isinstance(node, ast.Constant)
    kept, node.value = node.value, ""
    try:
        return ast.dump(tree)
    finally:
        node.value = kept


@functools.lru_cache(maxsize=8)
def _shape_of(packer: Packer) -> _Shape:
    """Pack two different texts; the one constant that differs is the payload slot."""
    a, b = (ast.parse(packer(t)) for t in ("a = 1\n", "b = 2\n"))
    na, nb = list(ast.walk(a)), list(ast.walk(b))
    if len(na) != len(nb):
        raise PackError(f"{PACKER}'s wrapper changes shape with its input")
    slots = [
        i
        for i, (x, y) in enumerate(zip(na, nb, strict=True))
        if isinstance(x, ast.Constant) and isinstance(y, ast.Constant) and x.value != y.value
    ]
    if len(slots) != 1 or not isinstance(na[slots[0]].value, str):
        raise PackError(f"{PACKER}'s wrapper has no single string payload ({len(slots)} slots)")
    if _blank(a, slots[0]) != _blank(b, slots[0]):
        raise PackError(f"{PACKER}'s wrapper differs beyond its payload")
    return _Shape(_blank(a, slots[0]), len(na), slots[0])


class _Compiled:
    """Stands in for the code object the wrapper compiles: nothing of it is ever run."""

    def __init__(self, source: object) -> None:
        self.source = source


def unpack(text: str, packer: Packer | None = None) -> str | None:
    """The readable source a packed file runs, or None when ``text`` is not a packed form.

    Recognised: exactly the shape of the (bundled, by default) packer's output with any
    string as payload. Only then is the wrapper run, with ``compile`` and ``exec`` replaced
    by recorders, so the text it would compile is returned and nothing of it is executed.
    """
    shape = _shape_of(packer or load_packer())
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    nodes = list(ast.walk(tree))
    if len(nodes) != shape.n_nodes:
        return None
    payload = nodes[shape.slot]
    if not (isinstance(payload, ast.Constant) and isinstance(payload.value, str)):
        return None
    if _blank(tree, shape.slot) != shape.dump:
        return None
    seen: list[object] = []

    def _compile(source: object, *_a: object, **_k: object) -> _Compiled:
        return _Compiled(source)

    def _exec(code: object, *_a: object, **_k: object) -> None:
        seen.append(code.source if isinstance(code, _Compiled) else code)

    namespace: dict = {
        "__builtins__": builtins,
        "__name__": "golf_task.pack.unpacked",
        "compile": _compile,
        "exec": _exec,
    }
    try:
        exec(compile(tree, "<packed train_gpt.py>", "exec", dont_inherit=True), namespace)
    except (ValueError, LookupError, lzma.LZMAError, UnicodeDecodeError):
        return None  # the payload is not base85 / lzma / UTF-8: a damaged file
    ran = [s for s in seen if isinstance(s, str)]
    if len(ran) == 1:
        return ran[0]
    source = namespace.get(SOURCE_GLOBAL)
    return source if isinstance(source, str) else None


# ---------------------------------------------------------------------------- command line


def readable(data: bytes) -> str:
    """A script file's readable source: the text inside when it is a packed form, else the
    file's own text (for readers of a records folder: the audit's configuration, diffs)."""
    text = source_text(data)
    return unpack(text) or text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m golf_task.pack",
        description="Write the self-extracting form of a training script (the code bytes a "
        "submission ships), or recover the source from one.",
    )
    ap.add_argument("script", metavar="SCRIPT", type=Path)
    ap.add_argument("-o", "--out", metavar="OUT", default="-", help="output file (- = stdout)")
    ap.add_argument("--unpack", action="store_true", help="SCRIPT is packed: write its source")
    args = ap.parse_args(argv)
    try:
        source = source_text(args.script.read_bytes())
        inner = unpack(source)
    except (OSError, UnicodeDecodeError, PackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.unpack:
        if inner is None:
            print(f"error: {args.script} is not a packed script", file=sys.stderr)
            return 1
        out, what = inner, f"unpacked {len(source.encode()):,} -> {len(inner.encode()):,} bytes"
    else:
        if inner is not None:
            print(f"error: {args.script} is packed already (--unpack reads it)", file=sys.stderr)
            return 1
        try:
            out = pack(source)
        except PackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        what = f"packed {len(source.encode()):,} -> {len(out.encode()):,} bytes"
    if args.out == "-":
        sys.stdout.write(out)
    else:
        Path(args.out).write_text(out, encoding="utf-8", newline="\n")
    print(what, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
