"""The one secret rule: which environment names hold credentials, and that every way a value
enters helm (``job run``, ``host add``, ``--secret``, ``[secrets]`` in config.toml) applies it.

Issue 13: the old rule matched only whole ``_``-separated parts, so ``MYSECRET``,
``GITHUB_PAT``, ``APIKEY``, ``OPENAI_APIKEY`` and ``DBPASSWORD`` were stored and printed in
clear although docs/REMOTE.md promises ``*PASSWORD*``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helm.remote.secrets import MASK, SecretStore, is_secret_key, resolve_env, rule_for, scrub
from helm.workspace import Workspace

pytestmark = pytest.mark.engines

SECRET = [
    "MYSECRET", "GITHUB_PAT", "APIKEY", "OPENAI_APIKEY", "DBPASSWORD",  # the five
    "hf_token", "HF_TOKEN", "MYTOKEN", "TOKEN", "GITHUB_TOKEN", "HF_TOKEN_2", "DB_PASSWD",
    "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "SSH_PRIVATE_KEY",
    "GPG_PASSPHRASE", "GOOGLE_CREDENTIALS", "SESSION_COOKIE", "SMTP_PASS", "KEY", "GIT_AUTH",
    "PAT", "client_secret",
]  # fmt: skip
PLAIN = [
    "TRAIN_BATCH_TOKENS", "TOKENIZER_PATH", "DATA_PATH", "NUM_LAYERS", "MATRIX_LR", "SEED",
    "PATH", "PATTERN", "KEYBOARD", "MONKEY", "BYPASS", "AUTHOR", "VOCAB_SIZE", "MAX_TOKENS",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET)
def test_credential_names_are_secret(name: str) -> None:
    assert is_secret_key(name), name


@pytest.mark.parametrize("name", PLAIN)
def test_training_knobs_are_not(name: str) -> None:
    """Masking a knob would hide it from descriptions and make distinct runs "duplicates"."""
    assert not is_secret_key(name), name


def test_declared_names_from_config_and_flags(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[secrets]\nnames = ["CORP_THING", "vault_*"]\n')
    rule = rule_for(tmp_path, ["LOGIN"])
    assert rule.is_secret("CORP_THING") and rule.is_secret("corp_thing")
    assert rule.is_secret("VAULT_ADDR") and rule.is_secret("LOGIN")
    assert not rule.is_secret("CORP_OTHER") and rule.is_secret("HF_TOKEN")
    (tmp_path / "config.toml").write_text("[secrets]\nnames = 'CORP_THING'\n")
    with pytest.raises(ValueError, match=r"\[secrets\] names"):
        rule_for(tmp_path)


def test_scrub_hides_known_values_in_free_text() -> None:
    assert scrub("use sk-abc123 now", ["sk-abc123"]) == f"use {MASK} now"
    assert scrub("a b", ["b"]) == "a b"  # too short to be a credential: text left alone


def test_a_mask_nobody_can_fill_is_left_out() -> None:
    """A job is better off without a token than with ``***`` as one."""
    stored = {"HF_TOKEN": MASK, "GH_TOKEN": MASK, "LR": "1"}
    assert resolve_env(stored, {"HF_TOKEN": "hf-1", "EXTRA_KEY": "k"}) == {
        "HF_TOKEN": "hf-1",
        "LR": "1",
        "EXTRA_KEY": "k",
    }


def _job(helm, *args: str) -> dict:
    res = helm("job", "run", *args, "--no-daemon", "--json")
    assert res.code == 0, res.err
    return res.json()


def test_job_run_masks_every_credential_name(
    helm, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "exp"
    src.mkdir()
    (src / "train_gpt.py").write_text("print('hi')\n")
    values = {name: f"v-{name.lower()}-4f1e" for name in SECRET[:5]}
    env = [a for k, v in values.items() for a in ("--env", f"{k}={v}")]
    ws.config_path.write_text('[secrets]\nnames = ["CORP_THING"]\n')
    monkeypatch.setenv("LOGIN", "from-my-shell-77a")
    job = _job(
        helm, str(src), *env, "--env", "CORP_THING=corp-9c1", "--env", "LR=0.0421337",
        "--secret", "LOGIN", "--secret", "LR", "--env", "NOTE=plain",
    )  # fmt: skip
    assert job["env"] == {
        **{k: MASK for k in values}, "CORP_THING": MASK, "LOGIN": MASK, "LR": MASK,
        "NOTE": "plain",
    }  # fmt: skip
    shown = json.dumps(helm("runs", "--json").json()) + json.dumps(job)
    scoped = SecretStore(ws.root).get(f"job:{job['id']}")
    assert scoped == {
        **values,
        "CORP_THING": "corp-9c1",
        "LOGIN": "from-my-shell-77a",
        "LR": "0.0421337",
    }
    for secret in scoped.values():
        assert secret not in shown
        if not os.environ.get("HELM_DB_URL"):
            assert secret.encode() not in (ws.root / "helm.db").read_bytes()
    res = helm("job", "run", str(src), "--secret", "NOT_SET_ANYWHERE", "--no-daemon")
    assert res.code == 2 and "NOT_SET_ANYWHERE" in res.err
    # cancelled while queued: no daemon will see it end, the cancel forgets its secrets
    assert helm("job", "cancel", str(job["id"])).code == 0
    assert SecretStore(ws.root).get(f"job:{job['id']}") == {}


def test_host_add_applies_the_same_rule(helm, ws: Workspace) -> None:
    ws.config_path.write_text('[secrets]\nnames = ["CORP_THING"]\n')
    res = helm(
        "host", "add", "h", "--ssh", "u@10.0.0.9", "--env", "DBPASSWORD=pw-31337",
        "--env", "CORP_THING=corp-1", "--env", "NCCL_DEBUG=WARN",
    )  # fmt: skip
    assert res.code == 0, res.err
    host = helm("host", "ls", "--json").json()[0]
    assert host["env"] == {"DBPASSWORD": MASK, "CORP_THING": MASK, "NCCL_DEBUG": "WARN"}
    assert SecretStore(ws.root).get("host:h") == {"DBPASSWORD": "pw-31337", "CORP_THING": "corp-1"}
