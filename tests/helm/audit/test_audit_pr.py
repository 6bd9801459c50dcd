"""``helm audit pr``: fakes caught from recorded GitHub responses, the pin gate, the context.

GitHub cannot be reached from here: every test serves the recorded responses in
``fixtures/github/`` through ``httpx.MockTransport`` (see conftest.py), and the PR folders'
contents are real logs (the shared fixture records) around scripts built for each case.
"""

from __future__ import annotations

import json

import pytest
from audit_kit import (
    BUNDLED,
    RECORD_11L,
    modified_script,
    readme,
    record_11l_files,
)

from helm.workspace import Workspace


def finding(ev: dict, name: str) -> dict:
    return next(f for f in ev["findings"] if f["name"] == name)


@pytest.mark.engines
def test_baseline_code_claiming_a_record_is_a_copy(helm, ws: Workspace, serve) -> None:
    """PR 601: helm's own script, byte for byte, around the 11L record's logs and claim."""
    requests = serve({601: record_11l_files(BUNDLED.read_bytes())})
    res = helm("audit", "pr", "601", "--json")
    assert res.code == 0, res.err
    ev = res.json()
    assert ev["ref"] == "openai/parameter-golf#601"
    assert ev["verdict"] == "copy"
    assert "byte-identical to helm's bundled train_gpt.py" in ev["reason"]
    assert "claims 1.12707468" in ev["reason"]
    sim = finding(ev, "code.similarity")
    assert sim["status"] == "fail" and sim["details"]["best"]["similarity"] == 1.0
    assert ev["similarity"]["ref"] == "bundled"
    # the logs themselves agree with the JSON: the claim check passes, the code gives it away
    assert finding(ev, "claim.logs")["status"] == "warn"  # one log's score, not the mean
    assert ev["pr"]["author"] == "speedy" and ev["pr"]["head_sha"].startswith("0601")

    # the folder is kept in the workspace, under its own name, without model artifacts
    folder = ws.root / "audits" / "openai_parameter-golf_601" / "2026-03-25_Baseline_Record_1.1271"
    assert ev["folder"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "submission.json", "train_gpt.py",
        "train_seed1337.log", "train_seed2025.log", "train_seed42.log",
    ]  # fmt: skip
    assert not any(r.url.path.endswith((".ptz", "/contents/README.md")) for r in requests)
    meta = json.loads((folder.parent / "pr.json").read_text())
    assert meta["number"] == 601 and meta["title"].startswith("Record: 11L")

    # recorded, posted to the feed as a verification, flagged in the agents' context
    listed = helm("audit", "ls", "--json").json()
    assert [(r["ref"], r["verdict"]) for r in listed] == [("openai/parameter-golf#601", "copy")]
    assert listed[0]["claimed_bpb"] == pytest.approx(1.12707468)
    assert listed[0]["reproduced_bpb"] is None
    feed = helm("feed", "ls", "--json").json()
    post = next(p for p in feed if p["kind"] == "verification")
    assert post["text"].startswith("audit openai/parameter-golf#601: COPY")
    ctx = helm("context", "--json").json()
    assert ctx["audits"][0]["verdict"] == "copy"
    text = helm("context").out
    assert "do not build on them" in text and "openai/parameter-golf#601: copy" in text
    assert "COPY" in helm("audit", "show", "601").out


@pytest.mark.engines
def test_pin_warns_before_pinning_a_pr_without_a_passing_audit(helm, ws: Workspace, serve) -> None:
    serve({601: record_11l_files(BUNDLED.read_bytes())})
    res = helm("pin", "pr", "601")
    assert res.code == 1
    assert "never been audited" in res.err and "--force" in res.err
    assert helm("audit", "pr", "601").code == 0
    res = helm("pin", "pr", "601")
    assert res.code == 1 and "audit says copy" in res.err
    assert helm("pin", "show", "--json").json()[0]["kind"] == "init"  # nothing was pinned
    res = helm("pin", "pr", "601", "--force", "--json")
    assert res.code == 0, res.err
    assert res.json()["ref"] == "openai/parameter-golf#601"


def test_logs_that_disagree_with_the_json_fail(helm, ws: Workspace, serve) -> None:
    """PR 602: a derived script, the 11L logs (in logs/), and a JSON claiming 1.05."""
    files = record_11l_files(modified_script(), claim=1.05)
    files = {(f"logs/{k}" if k.endswith(".log") else k): v for k, v in files.items()}
    serve({602: files})
    res = helm("audit", "pr", "602", "--json")
    assert res.code == 0, res.err
    ev = res.json()
    assert ev["verdict"] == "invalid"
    claim = finding(ev, "claim.logs")
    assert claim["status"] == "fail"
    assert "1.05" in claim["message"] and "1.12" in claim["message"]
    assert finding(ev, "validate")["status"] == "fail"
    assert "consistency.score" in finding(ev, "validate")["details"]["failed"]
    assert "claim.logs" in ev["reason"]
    # the logs in the subfolder were fetched and read
    assert sorted(ev["validator"]["figures"]["seeds"]) == [42, 1337, 2025]
    # the code is a one-line edit of the baseline: named, but not a copy
    sim = finding(ev, "code.similarity")
    assert sim["status"] == "warn" and "derived from helm's bundled" in sim["message"]
    assert sim["details"]["best"]["changed_lines"] == 1
    # the 11L logs ran 9000 iterations; this code says 20000 and states no configuration
    hp = finding(ev, "logs.hyperparameters")
    assert hp["status"] == "warn" and "iterations" in hp["message"]
    assert {m["key"] for m in hp["details"]["mismatches"]} == {"iterations"}
    # --reproduce is skipped: the static checks already decide
    res = helm("audit", "pr", "602", "--reproduce", "--json")
    ev = res.json()
    assert ev["reproduction"] is None and "already say invalid" in ev["rerun_note"]


@pytest.mark.engines
def test_a_copy_of_an_earlier_pr_names_it(helm, ws: Workspace, serve) -> None:
    """PR 612 is PR 611's script with its comments reworded, claiming a better score."""
    script = modified_script() + b"\n\ndef _tweak() -> int:\n    return 1\n"
    reworded = script.replace(b"# ====", b"# ----").replace(b'"""helm\'s', b'"""Our')
    assert reworded != script
    serve(
        {
            611: record_11l_files(script),
            612: record_11l_files(reworded, claim=1.10),
        }
    )
    first = helm("audit", "pr", "611", "--json").json()
    assert first["verdict"] == "unverified", first["reason"]
    assert finding(first, "code.similarity")["status"] == "warn"  # derived from the baseline
    ev = helm("audit", "pr", "612", "--json").json()
    assert ev["verdict"] == "copy"
    best = finding(ev, "code.similarity")["details"]["best"]
    assert best["ref"] == "openai/parameter-golf#611"
    assert best["identical_code"] and not best["identical_bytes"]
    assert "the same program as openai/parameter-golf#611" in ev["reason"]
    # re-auditing 611 does not compare it with itself
    again = helm("audit", "pr", "611", "--json").json()
    assert finding(again, "code.similarity")["details"]["best"]["ref"] != (
        "openai/parameter-golf#611"
    )
    rows = helm("audit", "ls", "--json").json()
    assert [r["ref"] for r in rows] == ["openai/parameter-golf#611", "openai/parameter-golf#612"]


def test_errors_are_one_line(helm, ws: Workspace, serve, tmp_path) -> None:
    serve({601: record_11l_files(BUNDLED.read_bytes())})
    res = helm("audit", "pr", "999")
    assert res.code == 1 and "not found on GitHub: pull request #999" in res.err
    res = helm("audit", "dir", str(tmp_path / "nope"))
    assert res.code == 1 and "not a folder" in res.err
    res = helm("audit", "pr", "601", "--seeds", "1")
    assert res.code == 2 and "--reproduce" in res.err
    res = helm("audit", "show", "42")
    assert res.code == 1 and "no audit of 42" in res.err
    assert RECORD_11L.is_dir() and readme("x", None).startswith(b"# x")
