"""Units of the audit: normalisation, configuration reading, data hazards, the verdict rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_kit import BUNDLED, RECORD_11L, modified_script

from helm.audit import config as cfg
from helm.audit import similarity as sim
from helm.audit.checks import Finding, Log, check_data, check_steps, echoed_source
from helm.audit.reproduce import K_SPREADS, SPREAD_FLOOR, compare, default_seeds
from helm.audit.verdict import decide

SCRIPT = b'''"""A script."""
import os

class Hyperparameters:
    """Knobs."""
    iterations = int(os.environ.get("ITERATIONS", 20000))
    num_layers: int = 9  # depth

def main():
    # train
    return Hyperparameters().iterations
'''


def test_cosmetic_edits_are_the_same_program() -> None:
    reworded = (
        SCRIPT.replace(b'"""Knobs."""', b'"""Settings, read from the env."""')
        .replace(b"# depth", b"# how deep")
        .replace(b"    # train\n", b"\n\n    # training happens here\n")
    )
    m = sim.compare(reworded, sim.KnownScript("orig", "o", SCRIPT))
    assert m.identical_code and not m.identical_bytes and m.similarity == 1.0
    changed = SCRIPT.replace(b'"ITERATIONS", 20000', b'"ITERATIONS", 9000')
    m = sim.compare(changed, sim.KnownScript("orig", "o", SCRIPT))
    assert not m.identical and m.changed_lines == 1 and m.similarity > 0.8
    other = b"print('something else entirely')\n"
    assert sim.compare(other, sim.KnownScript("orig", "o", SCRIPT)).similarity < 0.2


def test_one_changed_default_of_the_real_script_is_derived_not_copied() -> None:
    m = sim.compare(modified_script(), sim.KnownScript("b", "b", BUNDLED.read_bytes()))
    assert not m.identical and m.changed_lines == 1 and m.similarity > 0.998 > sim.DERIVED


def test_unparsable_text_still_compares() -> None:
    assert sim.normalized_lines(b"def broken(:\n  x = '\n# c\n\n y\n") == [
        "def broken(:",
        "x = '",
        "y",
    ]


def test_code_config_reads_both_styles() -> None:
    c = cfg.code_config(SCRIPT)
    assert c.defaults == {"iterations": "20000", "num_layers": "9"}
    assert c.reads("ITERATIONS") and c.reads("num_layers") and not c.reads("NCCL_DEBUG")
    ours = cfg.code_config(BUNDLED.read_bytes())
    assert ours.defaults["iterations"] == "20000" and ours.defaults["qk_gain_init"] == "5.0"
    assert not cfg.code_config(b"def (:").parsed


def test_stated_config_from_readme_and_json(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "Set NUM_LAYERS=11 in prose is ignored.\n\n"
        "```bash\nNCCL_DEBUG=INFO ITERATIONS=9000 DATA_PATH=/x SEED=3 OMP_NUM_THREADS=1 \\\n"
        "  torchrun train_gpt.py\n```\n\nor inline `NUM_LAYERS=12 python train_gpt.py`.\n"
    )
    (tmp_path / "submission.json").write_text(json.dumps({"env": {"ITERATIONS": 8000}}))
    stated = cfg.stated_config(tmp_path, cfg.code_config(SCRIPT))
    assert stated == {"ITERATIONS": "8000", "NUM_LAYERS": "12", "OMP_NUM_THREADS": "1"}
    eff = cfg.effective(cfg.code_config(SCRIPT), stated)
    assert eff["iterations"] == "8000" and cfg.same_value("8000.0", eff["iterations"])
    assert cfg.same_value("True", "1") and not cfg.same_value("0.5", "0.25")


def _log(tmp_path: Path, name: str, text: str) -> Log:
    from golf_task.logs import parse_text

    path = tmp_path / name
    path.write_text(text)
    return Log(name, path, parse_text(text))


def test_data_hazards(tmp_path: Path) -> None:
    def lines(shards: int, tokens: int, dataset: str = "fineweb10B_sp1024") -> str:
        return (
            f"train_loader:dataset:{dataset} train_shards:{shards}\n"
            f"val_loader:shards pattern=./data/x/fineweb_val_*.bin tokens:{tokens}\n"
        )

    ok = [
        _log(tmp_path, "a.log", lines(80, 62_021_632)),
        _log(tmp_path, "b.log", lines(80, 62_021_632)),
    ]
    assert check_data(ok).status == "pass"
    mixed = [ok[0], _log(tmp_path, "c.log", lines(80, 1_000_000))]
    f = check_data(mixed)
    assert f.status == "fail" and "different validation sets" in f.message
    assert "not the published split" in f.message
    many = [_log(tmp_path, "d.log", lines(195, 62_021_632))]
    f = check_data(many)
    assert f.status == "warn" and "more than any public record used" in f.message
    custom = [_log(tmp_path, "e.log", lines(10, 5, "my_own_tokens"))]
    assert "custom dataset my_own_tokens" in check_data(custom).message


def test_steps_must_add_up(tmp_path: Path) -> None:
    honest = "step:100/200 train_loss:3.0 train_time:5000ms step_avg:50.00ms\n"
    assert check_steps([_log(tmp_path, "h.log", honest)]).status == "pass"
    padded = "step:100/200 train_loss:3.0 train_time:9000ms step_avg:50.00ms\n"
    f = check_steps([_log(tmp_path, "p.log", padded)])
    assert f.status == "warn" and "train_time says 9.0s" in f.message
    over = "step:300/200 train_loss:3.0 train_time:15000ms step_avg:50.00ms\n"
    assert check_steps([_log(tmp_path, "o.log", over)]).status == "fail"


def test_echoed_source(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text(SCRIPT.decode() + "=" * 100 + "\nRunning Python\n")
    assert echoed_source(p) == SCRIPT.decode()
    p.write_text("step:1/2 train_loss:3\n")
    assert echoed_source(p) is None


def test_compare_against_the_spread() -> None:
    ok = compare(1.10, 0.001, [1.1025])
    assert ok["outcome"] == "reproduced" and ok["gap_spreads"] == pytest.approx(2.5)
    bad = compare(1.10, 0.001, [1.104])
    assert bad["outcome"] == "not_reproduced" and "not reproduced" in bad["summary"]
    assert bad["gap_bpb"] == pytest.approx(0.004) and bad["gap_spreads"] > K_SPREADS
    floor = compare(1.10, None, [1.1001])
    assert floor["spread"] == SPREAD_FLOOR and floor["outcome"] == "reproduced"
    better = compare(1.10, 0.001, [1.09])
    assert better["outcome"] == "reproduced" and "configuration differ" in better["summary"]
    assert default_seeds([None, 42]) == [42] and default_seeds([]) == [1337]


def test_verdict_rules_first_match_wins() -> None:
    copy = Finding("code.similarity", "fail", "copy: byte-identical to X")
    bad = Finding("claim.logs", "fail", "claims 1.0 but logs say 1.2")
    warn = Finding("data.hazards", "warn", "custom data")
    repro_ok = {"outcome": "reproduced", "summary": "ok"}
    repro_bad = {"outcome": "not_reproduced", "summary": "gap"}
    assert decide([copy, bad], repro_ok).verdict == "copy"
    assert decide([bad, warn], repro_ok).verdict == "invalid"
    assert decide([warn], repro_bad).verdict == "not_reproduced"
    assert decide([warn], repro_ok).verdict == "real"
    assert decide([warn], None).verdict == "unverified"
    assert decide([warn], {"outcome": "no_score", "summary": "crashed"}).verdict == "unverified"


def test_a_rerun_nobody_runs_is_cancelled_and_gives_no_verdict(ws, tmp_path: Path) -> None:
    """No host, no daemon: the job waits in the queue until the audit gives up on it."""
    from helm.audit.audit import RerunOptions, audit_folder

    folder = tmp_path / "2026-05-05_Lonely"
    folder.mkdir()
    (folder / "train_gpt.py").write_bytes(modified_script())
    (folder / "README.md").write_text("# lonely\n")
    rec = json.loads((RECORD_11L / "submission.json").read_text())
    rec["bytes_code"] = len(modified_script())
    (folder / "submission.json").write_text(json.dumps(rec))
    for seed in (1337, 42, 2025):
        (folder / f"train_seed{seed}.log").write_bytes(
            (RECORD_11L / f"train_seed{seed}.log").read_bytes()
        )
    ev = audit_folder(ws, folder, rerun=RerunOptions(gpus=1, poll_s=0.05, wait_s=0.3))
    repro = ev["reproduction"]
    assert repro["outcome"] == "no_score" and repro["seeds"] == [1337]
    (run,) = repro["runs"]
    assert run["state"] == "timeout" and "cancelled" in run["error"]
    assert ev["verdict"] == "unverified" and "the rerun gave no score" in ev["reason"]
    with ws.db(write=False) as db:
        assert db.rows("SELECT state FROM job") == [{"state": "cancelled"}]


def test_pin_warning_follows_the_latest_audit_and_the_head_commit(ws) -> None:
    from helm.audit.store import pin_warning, record

    ref = "openai/parameter-golf#7"
    assert "never been audited" in (pin_warning(ws, ref, "a" * 40) or "")
    base = {"ref": ref, "reason": "r", "findings": [], "pr": {"head_sha": "a" * 40}}
    record(ws, {**base, "verdict": "unverified", "reason": "nothing was rerun"})
    assert pin_warning(ws, ref, "a" * 40) == f"{ref}'s audit says unverified: nothing was rerun"
    record(ws, {**base, "verdict": "real"})
    assert pin_warning(ws, ref, "a" * 40) is None
    assert "changed since its audit" in (pin_warning(ws, ref, "b" * 40) or "")
