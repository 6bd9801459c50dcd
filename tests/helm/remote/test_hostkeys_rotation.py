"""Trust replaces keys: a loopback sshd of its own whose host key rotates A -> B -> C -> B.

Each trust leaves exactly one key for the host in the workspace's known_hosts (the last one
trusted), so a key trusted once and replaced since (B, back again) is a CHANGED key, refused
like any other. A changed key is never taken with a bare ``--yes``: only with the new key's
fingerprint given (``--fingerprint``, read off the box by other means) or typed confirmation
at a terminal. The terminal is the only thing simulated here (``isatty``)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatch_helpers import add_ssh_host

from helm.remote.loopback import LoopbackSshd, make_key
from helm.workspace import Workspace


@pytest.fixture
def rotating(tmp_path: Path) -> Iterator[tuple[LoopbackSshd, dict[str, Path]]]:
    """An sshd presenting key A, and keys B and C to rotate to (ed25519, like A)."""
    server = LoopbackSshd.start(tmp_path / "sshd")
    keys = {name: make_key(tmp_path / f"key_{name}") for name in "ABC"}
    server.use_host_key(keys["A"])
    yield server, keys
    server.stop()


def _fp(key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]  # SHA256:...


def _pub(key: Path) -> str:
    """``ssh-ed25519 AAAA...``: the key as a known_hosts line carries it."""
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def _lines(ws: Workspace, sshd: LoopbackSshd) -> list[str]:
    text = ws.known_hosts_path.read_text() if ws.known_hosts_path.exists() else ""
    return [ln for ln in text.splitlines() if ln.startswith(f"[127.0.0.1]:{sshd.port} ")]


class _Terminal(io.StringIO):
    """stdin as a person at a terminal would give it (the answers typed, one per line)."""

    def isatty(self) -> bool:
        return True


def test_trust_replaces_keys_through_rotation(
    ws: Workspace,
    rotating: tuple[LoopbackSshd, dict[str, Path]],
    helm,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    sshd, keys = rotating
    fp = {name: _fp(path) for name, path in keys.items()}
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # a user known_hosts of our own
    user_kh = tmp_path / "user" / ".ssh" / "known_hosts"
    user_kh.parent.mkdir(parents=True)

    # A, first contact: an unknown key may be trusted with --yes (the fingerprint is shown)
    res = helm("host", "trust", "box", "--yes")
    assert res.code == 0, res.err
    assert fp["A"] in res.out
    assert _lines(ws, sshd) == [f"[127.0.0.1]:{sshd.port} {_pub(keys['A'])}"]
    assert helm("host", "check", "box").code == 0

    # B: a changed key is refused by host check, and by a bare --yes
    sshd.use_host_key(keys["B"])
    res = helm("host", "check", "box")
    assert res.code == 1 and "CHANGED host key" in res.err
    assert fp["A"] in res.err and fp["B"] in res.err
    res = helm("host", "trust", "box", "--yes")
    assert res.code == 1
    assert fp["A"] in res.err and fp["B"] in res.err  # both shown, loudly
    assert "--fingerprint" in res.err
    assert fp["B"] not in ws.known_hosts_path.read_text()
    # a fingerprint that is not the presented key's changes nothing
    res = helm("host", "trust", "box", "--fingerprint", fp["C"])
    assert res.code == 1 and fp["B"] in res.err
    res = helm("host", "trust", "box", "--fingerprint", fp["B"])
    assert res.code == 0, res.err
    assert _lines(ws, sshd) == [f"[127.0.0.1]:{sshd.port} {_pub(keys['B'])}"]  # A is gone
    assert helm("host", "check", "box").code == 0

    # C, at a terminal: "y" is not enough for a changed key; the host's name is
    sshd.use_host_key(keys["C"])
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    res = helm("host", "trust", "box")
    assert res.code == 1 and fp["B"] in res.err and fp["C"] in res.err
    monkeypatch.setattr("sys.stdin", _Terminal("box\n"))
    res = helm("host", "trust", "box")
    assert res.code == 0, res.err
    assert _lines(ws, sshd) == [f"[127.0.0.1]:{sshd.port} {_pub(keys['C'])}"]
    assert helm("host", "check", "box").code == 0

    # B again: trusted once, replaced since: refused as changed, even though the user's own
    # ~/.ssh/known_hosts still lists it (the workspace's trust for this host wins)
    user_kh.write_text(f"[127.0.0.1]:{sshd.port} {_pub(keys['B'])}\n")
    sshd.use_host_key(keys["B"])
    res = helm("host", "check", "box")
    assert res.code == 1 and "CHANGED host key" in res.err
    assert fp["B"] in res.err and fp["C"] in res.err
    kh = ws.known_hosts_path.read_text()
    res = helm("host", "trust", "box", "--yes")
    assert res.code == 1 and fp["B"] in res.err and fp["C"] in res.err
    assert ws.known_hosts_path.read_text() == kh  # nothing was trusted


def test_a_key_of_another_type_still_trusted_is_not_a_change(
    ws: Workspace, rotating: tuple[LoopbackSshd, dict[str, Path]], helm, tmp_path: Path
) -> None:
    """The box has an ed25519 and an ECDSA key and the workspace trusts the ECDSA one: a
    connection offers only ECDSA and succeeds, so trust must not cry "changed" because a
    bare look at the box would prefer ed25519."""
    sshd, keys = rotating
    ecdsa = tmp_path / "key_ecdsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    config = sshd.root / "sshd_config"
    config.write_text(config.read_text() + f"HostKey {ecdsa}\n")
    sshd.use_host_key(keys["A"])  # restart, now with both keys
    add_ssh_host(ws, sshd, gpus=1, python=sys.executable)
    ws.known_hosts_path.write_text(f"[127.0.0.1]:{sshd.port} {_pub(ecdsa)}\n")
    assert helm("host", "check", "box").code == 0
    res = helm("host", "trust", "box", "--yes")
    assert res.code == 0 and "already trusted" in res.out and _fp(ecdsa) in res.out, res
    assert ws.known_hosts_path.read_text() == f"[127.0.0.1]:{sshd.port} {_pub(ecdsa)}\n"
