"""golf_task.pack: the self-extracting form a submission ships as code.

The form has one definition, ``pack_source`` in golf_task/train_gpt.py; these tests pin the
text it must produce (the validator and promotion rely on it), that it round-trips, is
deterministic across processes, runs, and is much smaller than the readable script.
"""

from __future__ import annotations

import base64
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

from golf_task import pack
from golf_task.pack import PackError, load_packer, packed_size, packer_for, unpack

REPO = Path(__file__).resolve().parents[2]
TRAIN_GPT = REPO / "golf_task" / "train_gpt.py"
# A tiny script for the packed form to run: it reads its own source the way train_gpt.py does.
TINY = (
    "import sys\n"
    'src = globals().get("_HELM_SOURCE")\n'
    'print("hello from", __name__, "source chars", len(src), "é")\n'
    'sys.exit(0 if src.startswith("import sys") else 5)\n'
)
ODD = [
    "",
    "x = 1",  # no trailing newline
    'print("quotes \\" \' \\\\ and \\"\\"\\" triple")\n',
    "s = '''\n\"\"\"\n'''  # ünïcödé, 中文, emoji 🎯\n",
    "\t\n\n   \n",
]


def _python(*args: str, cwd: Path = REPO, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        encoding="utf-8",
        cwd=cwd,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        **kw,
    )


def test_bundled_pack_source_is_the_documented_wrapper() -> None:
    """The exact three lines the task specifies (the payload: lzma preset 9e, then b85)."""
    code = 'print("hi")\n'
    blob = lzma.compress(code.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    b85 = base64.b85encode(blob).decode()
    assert load_packer()(code) == (
        "import lzma,base64\n"
        f'_HELM_SOURCE=lzma.decompress(base64.b85decode("{b85}")).decode("utf-8")\n'
        'exec(compile(_HELM_SOURCE,"train_gpt.py","exec"))\n'
    )


@pytest.mark.parametrize("source", ODD, ids=range(len(ODD)))
def test_round_trip_of_odd_sources(source: str) -> None:
    packed = pack.pack(source)
    assert unpack(packed) == source
    assert packed_size(source) == len(packed.encode("utf-8"))


def test_round_trip_and_size_of_the_real_script() -> None:
    source = pack.source_text(TRAIN_GPT.read_bytes())
    packed = pack.pack(source)
    assert unpack(packed) == source
    raw, small = len(source.encode("utf-8")), packed_size(source)
    # the point of it: the records' ~50 KB scripts ship as ~15-25 KB
    assert small < raw / 2, (raw, small)
    assert unpack(source) is None  # the readable script is not a packed one


def test_packing_is_deterministic_across_processes() -> None:
    """Every rank and every later reader (promotion, validation) must count the same bytes."""
    here = pack.pack(TINY)
    assert pack.pack(TINY) == here
    other = _python(
        "-c", f"import sys; from golf_task import pack; sys.stdout.write(pack.pack({TINY!r}))"
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout == here


def test_loading_the_packer_does_not_import_torch() -> None:
    probe = (
        "import sys; from golf_task import pack; pack.pack('x = 1'); print('torch' in sys.modules)"
    )
    out = _python("-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_packed_file_runs_and_sees_its_source(tmp_path: Path) -> None:
    (tmp_path / "packed.py").write_text(pack.pack(TINY), encoding="utf-8")
    out = _python("packed.py", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"hello from __main__ source chars {len(TINY)} é\n"


def test_a_traceback_names_train_gpt(tmp_path: Path) -> None:
    """Errors in the packed source point at train_gpt.py lines, as the wrapper compiles it so."""
    (tmp_path / "packed.py").write_text(pack.pack("x = 1\nraise SystemError('boom')\n"))
    out = _python("packed.py", cwd=tmp_path)
    assert out.returncode == 1
    assert 'File "train_gpt.py", line 2' in out.stderr and "boom" in out.stderr


# ---------------------------------------------------------------------------- unpack


TAMPERED = [
    "extra statement",
    "statement before",
    "exec replaced",
    "other import",
    "no exec",
    "bad base85",
    "bad lzma",
    "not python",
    "empty",
]


def _tamper(packed: str) -> dict[str, str]:
    lines = packed.splitlines(keepends=True)
    start = packed.index('b85decode("') + len('b85decode("')
    return {
        "extra statement": packed + "open('pwned', 'w').write('x')\n",
        "statement before": "open('pwned', 'w').write('x')\n" + packed,
        "exec replaced": packed.replace("exec(compile", "print(compile"),
        "other import": packed.replace("import lzma,base64", "import lzma,base64,os"),
        "no exec": "".join(lines[:2]),
        "bad base85": packed[:start] + "~~~~~" + packed[start + 5 :],
        "bad lzma": packed[:start] + "0000000000" + packed[start + 10 :],
        "not python": "this is not python (\n",
        "empty": "",
    }


@pytest.mark.parametrize("case", TAMPERED)
def test_unpack_refuses_anything_but_the_packed_shape(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = _tamper(pack.pack(TINY))
    assert sorted(cases) == sorted(TAMPERED)
    text = cases[case]
    assert unpack(text) is None
    assert not (tmp_path / "pwned").exists()  # a text of another shape is never run


def test_unpack_accepts_the_shape_with_other_whitespace() -> None:
    """The shape is the AST, not the spelling: a reformatted wrapper still runs the same."""
    packed = pack.pack(TINY).replace("import lzma,base64", "import lzma, base64")
    assert unpack(packed) == TINY


# ---------------------------------------------------------------------------- which packer


def test_a_script_with_its_own_pack_source_is_packed_by_it(tmp_path: Path) -> None:
    """An agent may change pack_source; its log counted that one's output, so it is used."""
    own = (
        "import sys\n\n"
        "def pack_source(code: str) -> str:\n"
        "    return 'exec(' + repr(code) + ')\\n'  # lzma and base64 unused\n"
    )
    assert packer_for(own)(own) == f"exec({own!r})\n"
    assert pack.pack(own) == f"exec({own!r})\n"
    plain = "print(1)\n"
    assert pack.pack(plain) == load_packer()(plain)  # no pack_source: the bundled one


def test_broken_packers_are_refused() -> None:
    with pytest.raises(PackError, match="defines no top-level pack_source"):
        load_packer("def other(code):\n    return code\n", where="x.py")
    with pytest.raises(PackError, match="returned bytes, not str"):
        load_packer("def pack_source(code):\n    return code.encode()\n")("x")
    with pytest.raises(PackError, match="does not parse"):
        load_packer("def pack_source(:\n")


# ---------------------------------------------------------------------------- command line


def test_cli_packs_unpacks_and_refuses(tmp_path: Path) -> None:
    script = tmp_path / "tiny.py"
    script.write_text(TINY, encoding="utf-8")
    out = _python("-m", "golf_task.pack", str(script), "-o", str(tmp_path / "packed.py"))
    assert out.returncode == 0, out.stderr
    packed = (tmp_path / "packed.py").read_text(encoding="utf-8")
    assert packed == pack.pack(TINY)
    assert f"-> {len(packed.encode()):,} bytes" in out.stderr
    to_stdout = _python("-m", "golf_task.pack", str(script))
    assert to_stdout.returncode == 0 and to_stdout.stdout == packed
    back = _python("-m", "golf_task.pack", "--unpack", str(tmp_path / "packed.py"))
    assert back.returncode == 0 and back.stdout == TINY
    again = _python("-m", "golf_task.pack", str(tmp_path / "packed.py"))
    assert again.returncode == 1 and "packed already" in again.stderr
    not_packed = _python("-m", "golf_task.pack", "--unpack", str(script))
    assert not_packed.returncode == 1 and "not a packed script" in not_packed.stderr
    missing = _python("-m", "golf_task.pack", str(tmp_path / "missing.py"))
    assert missing.returncode == 2 and "error:" in missing.stderr
