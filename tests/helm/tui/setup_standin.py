"""A stand-in for ``helm host setup NAME --data VARIANT`` in the TUI's setup tests.

The real command needs an SSH box and is tested in tests/helm/remote/test_host_setup.py;
here the TUI only has to run *a* command, stream its lines, interrupt it and refresh. This
prints the same kind of lines (``step k/6 ...``, the data ETA), and then either finishes the
way the real one does (the final check saved on the host row with ``save_check``, the
daemon's function) or waits until it is interrupted and says so as the real one does.

Usage: python setup_standin.py HOME NAME VARIANT done|wait
"""

from __future__ import annotations

import sys
import time

STEPS = ("driver", "venv", "packages", "code", "data", "check")


def good_check(**changes: object) -> dict:
    """A box's check as ``helm.remote.check.parse_check`` gives it: 8 GPUs, CUDA torch,
    plenty of disk (``changes`` make it worse)."""
    check: dict = {
        "python": "3.12.3",
        "torch": "2.6.0",
        "cuda": True,
        "gpus": [{"index": i, "name": "H100", "memory_total_mib": 81559.0} for i in range(8)],
        "nvidia_smi": True,
        "disk_dir": "/w",
        "disk_free_kb": 500 * 1024**2,
        "disk_free_gb": 500.0,
        "inodes_free": 10**6,
        "write_error": None,
        "setsid": True,
        "reachable": True,
        "checked_at": time.time(),
    }
    check.update(changes)
    return check


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    home, name, variant, mode = sys.argv[1:5]
    try:
        say(f"stand-in setup of {name} with --data {variant}")
        for i, step in enumerate(STEPS[:2], 1):
            say(f"step {i}/6 {step}: done (0.1s)")
        say("  data: 3/10 files, 120.0 MB downloaded, 40.0 MB/s, ETA 1m 30s")
        if mode == "wait":
            deadline = time.monotonic() + 60  # bounded: the test interrupts it long before
            while time.monotonic() < deadline:
                time.sleep(0.05)
            return 3
        for i, step in enumerate(STEPS[2:], 3):
            say(f"step {i}/6 {step}: done (0.1s)")
        from helm.models.job_life import save_check
        from helm.remote.check import judge
        from helm.workspace import Workspace

        check = judge(good_check(), host=name, declared_gpus=8)
        save_check(Workspace(home).store, name, True, check)
        return 0
    except KeyboardInterrupt:
        print(f"helm: interrupted: run `helm host setup {name}` again to continue", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
