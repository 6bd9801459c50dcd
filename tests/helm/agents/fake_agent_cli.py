"""A stand-in for a coding-agent CLI (``claude -p PROMPT ...``) that follows program.md.

The real CLIs (Claude Code, Codex, OpenCode) cannot run here (no network, no accounts), so
this script does what program.md asks of them, through the same contract: it reads
program.md and its instruction file, reads ``helm context``, acknowledges directives, makes
one change to ``train_gpt.py``, runs ``helm exp run``, posts an insight, and exits (the
driver restarts it, as it restarts a real CLI that ends its session).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def helm(*args: str) -> str:
    return subprocess.run(["helm", *args], capture_output=True, text=True, check=True).stdout


def main() -> int:
    prompt = sys.argv[1]
    here = Path.cwd()
    program = (here / "program.md").read_text()
    assert "helm exp run" in program and "program.md" in prompt
    assert "program.md" in (here / "CLAUDE.md").read_text()
    ctx = json.loads(helm("context", "--json"))
    for d in ctx["directives"]:
        helm("directive", "ack", str(d["id"]))
    src = (here / "train_gpt.py").read_text()
    lr = float(re.search(r"^LR = ([0-9.]+)$", src, re.M).group(1))
    new = round(lr + 0.01, 4)
    (here / "train_gpt.py").write_text(re.sub(r"^LR = [0-9.]+$", f"LR = {new}", src, flags=re.M))
    print(f"trying LR {lr} -> {new}", flush=True)
    res = json.loads(helm("exp", "run", "-m", f"LR {lr} -> {new}", "--json"))
    helm("feed", "post", f"LR {lr}\u2192{new}: {res['verdict']}, val_bpb {res['val_bpb']}")
    print(f"verdict {res['verdict']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
