"""``record_trust`` rewrites the workspace's known_hosts so that a host keeps one key per type
(plain, hashed and multi-host entries alike), and the workspace's keys for a host shadow the
user's. No server needed: the keys are made in process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import asyncssh
import pytest

from helm.remote import hostkeys
from helm.remote.hostkeys import Target

TARGET = Target("10.0.0.7", 2222)
PATTERN = "[10.0.0.7]:2222"


def _key(alg: str = "ssh-ed25519") -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(alg, **({"key_size": 1024} if alg == "ssh-rsa" else {}))


def _pub(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def _hashed(host: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, host.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_record_trust_replaces_same_type_keys_only(tmp_path: Path) -> None:
    old, older, rsa, other, new = _key(), _key(), _key("ssh-rsa"), _key(), _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(
        "\n".join(
            [
                "# kept: a comment",
                f"{PATTERN} {_pub(old)}",
                f"{_hashed(PATTERN)} {_pub(older)}",
                f"otherbox,{PATTERN} {_pub(other)}",
                f"{PATTERN} {_pub(rsa)}",
                f"@cert-authority *.example {_pub(other)}",
            ]
        )
        + "\n"
    )
    assert len(hostkeys.trusted_keys(kh, TARGET)) == 4  # everything old is trusted at first
    line = hostkeys.record_trust(kh, TARGET, new)
    assert line == f"{PATTERN} {_pub(new)}"
    assert kh.read_text().splitlines() == [
        "# kept: a comment",
        f"otherbox {_pub(other)}",  # the other host keeps its key; this one is taken out
        f"{PATTERN} {_pub(rsa)}",  # another key type is another key: kept
        f"@cert-authority *.example {_pub(other)}",
        line,
    ]
    trusted = {k.public_data for k in hostkeys.trusted_keys(kh, TARGET)}
    assert trusted == {new.public_data, rsa.public_data}
    assert kh.stat().st_mode & 0o777 == 0o600


def test_workspace_keys_shadow_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    stale, current, elsewhere = _key(), _key(), _key()
    user = tmp_path / ".ssh" / "known_hosts"
    user.parent.mkdir()
    user.write_text(f"{PATTERN} {_pub(stale)}\n[10.0.0.8]:2222 {_pub(elsewhere)}\n")
    kh = tmp_path / "ws_known_hosts"
    assert [k.public_data for k in hostkeys.trusted_keys(kh, TARGET)] == [stale.public_data]
    hostkeys.record_trust(kh, TARGET, current)
    assert [k.public_data for k in hostkeys.trusted_keys(kh, TARGET)] == [current.public_data]
    other = Target("10.0.0.8", 2222)  # a host the workspace does not name: the user's file
    assert [k.public_data for k in hostkeys.trusted_keys(kh, other)] == [elsewhere.public_data]


def test_fingerprint_matches_what_ssh_keygen_prints() -> None:
    key = _key()
    fp = key.get_fingerprint("sha256")
    assert hostkeys.fingerprint_matches(key, fp)
    assert hostkeys.fingerprint_matches(key, f"ssh-ed25519 {fp}")
    assert not hostkeys.fingerprint_matches(key, _key().get_fingerprint("sha256"))
    assert not hostkeys.fingerprint_matches(key, "")
