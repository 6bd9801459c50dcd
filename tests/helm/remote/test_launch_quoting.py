"""A job's environment and paths reach a shell on the box: whatever they contain, they must
arrive as data and never run. Hypothesis throws shell metacharacters, quotes, newlines and
unicode at the wrapper script, the launch command and an SSH command line."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from pathlib import Path

import pytest
from dispatch_helpers import trust
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helm.remote.launch import (
    ENV_FILE,
    EXIT_FILE,
    LOG_FILE,
    PID_FILE,
    RUN_SCRIPT,
    check_env_keys,
    job_environment,
    kill_command,
    launch_argv,
    launch_command,
    launch_files,
)
from helm.remote.loopback import LoopbackSshd
from helm.remote.ssh import SshBox

NASTY = [
    "$(touch CANARY)",
    "`touch CANARY`",
    "'; touch CANARY; '",
    '"; touch CANARY; "',
    "\n touch CANARY \n",
    "a\\",
    "$HOME ${PATH} $$ $? $!",
    "> CANARY",
    "| tee CANARY",
    "& touch CANARY &",
    "\\'",
    "é ☃ \t",
    "",
]
values = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
keys = st.from_regex(r"HX_[A-Z0-9_]{1,8}", fullmatch=True)
envs = st.dictionaries(keys, values, max_size=6)


def _run_wrapper(tmp: Path, env: dict[str, str]) -> dict[str, str]:
    """Run the wrapper in the foreground; the job is ``env -0``, which prints its environment."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in (LOG_FILE, EXIT_FILE, PID_FILE):
        (tmp / name).unlink(missing_ok=True)
    files = launch_files(env, ["env", "-0"], done_log=str(tmp / "done.log"))
    for name, (data, _mode) in files.items():
        (tmp / name).write_bytes(data)
    # the wrapper holds no value: it is the same whatever the environment
    assert (
        files[RUN_SCRIPT]
        == launch_files({}, ["env", "-0"], done_log=str(tmp / "done.log"))[RUN_SCRIPT]
    )
    subprocess.run(["sh", RUN_SCRIPT], cwd=tmp, check=True, timeout=10)
    assert (tmp / EXIT_FILE).read_text().strip() == "0"
    assert not (tmp / ENV_FILE).exists()  # read, then removed before the job started
    pairs = (tmp / LOG_FILE).read_bytes().decode().split("\0")
    seen = dict(p.split("=", 1) for p in pairs if p)
    return {k: v for k, v in seen.items() if k.startswith("HX_")}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(env=envs)
def test_wrapper_passes_any_value_and_runs_none(tmp_path: Path, env: dict[str, str]) -> None:
    work = tmp_path / "w"
    assert _run_wrapper(work, env) == env
    assert not any(p.name == "CANARY" for p in work.iterdir())


names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=20,
).filter(lambda n: n not in (".", "..") and len(n.encode()) < 200)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names)
def test_launch_command_quotes_the_folder(tmp_path: Path, name: str) -> None:
    rdir = tmp_path / "jobs" / name
    rdir.mkdir(parents=True, exist_ok=True)
    for file, (data, _mode) in launch_files({}, ["true"], done_log=str(tmp_path / "d")).items():
        (rdir / file).write_bytes(data)
    out = subprocess.run(
        ["sh", "-c", launch_command(str(rdir), wait_s=5)],
        capture_output=True,
        text=True,
        timeout=10,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().isdigit()
    assert not list(tmp_path.rglob("CANARY"))


def test_environment_defaults_and_overrides() -> None:
    env = job_environment(
        {"SEED": "1", "DATA_PATH": "/mine", "CUDA_VISIBLE_DEVICES": "7"},
        {"HOSTVAR": "h", "RUN_ID": "host-run"},
        job_id=12,
        seed=42,
        data_dir="/data/",
        gpu_ids=[4, 5],
    )
    assert env["SEED"] == "42"  # the job's seed field wins
    assert env["DATA_PATH"] == "/mine"  # the job's own setting wins over the host's --data
    # the host's --data holds the default variant, the one train_gpt.py reads by default
    assert env["TOKENIZER_PATH"] == "/data/tokenizers/fineweb_8192_bpe.model"
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5"  # always the assigned GPUs
    assert env["RUN_ID"] == "host-run" and env["HOSTVAR"] == "h"


def test_data_variant_picks_the_layout_under_the_hosts_data() -> None:
    def env_for(job_env: dict[str, str]) -> dict[str, str]:
        return job_environment(job_env, {}, job_id=1, seed=None, data_dir="/d", gpu_ids=[0])

    tiny = env_for({"VOCAB_SIZE": "1024"})  # the tiny preset's (the demo's) vocabulary
    assert tiny["DATA_PATH"] == "/d/datasets/fineweb10B_sp1024"
    assert tiny["TOKENIZER_PATH"] == "/d/tokenizers/fineweb_1024_bpe.model"
    assert env_for({})["DATA_PATH"] == "/d/datasets/fineweb10B_sp8192"  # the script's default
    assert env_for({"VOCAB_SIZE": "0"})["DATA_PATH"] == "/d/datasets/fineweb10B_sp8192"
    explicit = env_for({"VOCAB_SIZE": "1024", "DATA_VARIANT": "sp4096"})
    assert explicit["DATA_PATH"] == "/d/datasets/fineweb10B_sp4096"
    with pytest.raises(ValueError, match="DATA_VARIANT='sp999'"):
        env_for({"DATA_VARIANT": "sp999"})


@pytest.mark.parametrize("key", ["A B", "1X", "X;Y", "$(x)", "", "A-B"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_env_keys({key: "v"})
    with pytest.raises(ValueError):
        check_env_keys({"OK": "nul\x00byte"})


def test_launch_argv_and_kill_command() -> None:
    assert launch_argv("py", None, 1, "train_gpt.py") == ["py", "train_gpt.py"]
    assert launch_argv("py", None, 8, "train_gpt.py")[1:5] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=8",
    ]
    assert launch_argv("py", "torchrun --nproc_per_node={nproc}", 4, "t.py") == [
        "torchrun",
        "--nproc_per_node=4",
        "t.py",
    ]
    assert "-- -123" in kill_command(123, "TERM")
    with pytest.raises(ValueError):
        kill_command(1, "TERM; rm -rf /")


def test_ssh_command_lines_are_quoted(sshd: LoopbackSshd, tmp_path: Path) -> None:
    """Through the user's login shell and ``sh -c``: values come back byte for byte."""
    from helm.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    trust(ws, sshd)
    box = SshBox(
        "box",
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        identity=str(sshd.user_key),
        known_hosts_file=ws.known_hosts_path,
    )
    loop = asyncio.new_event_loop()
    canary_dir = tmp_path / "c"
    canary_dir.mkdir()
    try:
        loop.run_until_complete(box.ensure())

        @settings(max_examples=15, deadline=None)
        @given(value=values)
        def roundtrip(value: str) -> None:
            script = f"cd {shlex.quote(str(canary_dir))} && printf %s {shlex.quote(value)}"
            res = loop.run_until_complete(box.run(script))
            assert res.exit_status == 0 and res.stdout == value
            assert not list(canary_dir.iterdir())

        roundtrip()
    finally:
        loop.run_until_complete(box.close())
        loop.close()
