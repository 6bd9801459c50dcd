"""``helm audit dir`` over the nine public records in ``../shared/golf_fixtures/records/``.

They carry only logs and JSON, so they are audited with logs-only semantics: no code to
compare, nothing to rerun. Their logs can support a claim, never prove it, so the verdict
their logs support is ``unverified`` for all nine (none is contradicted by its own logs),
and the findings say how well each claim is supported: three claim one seed's score
rather than the mean of their seeds (the 11L one its best seed, the ternary one its best of
three), and one trained on a custom data export.
"""

from __future__ import annotations

import pytest
from audit_kit import RECORDS

# record -> (claim.logs, data.hazards) statuses the logs support
EXPECTED = {
    "2026-03-17_NaiveBaseline": ("pass", "pass"),
    "2026-03-17_LoRA_TTT": ("warn", "pass"),  # the JSON is train_v3's score alone
    "2026-03-19_MixedQuant_Int6Int8_SlidingWindow": ("pass", "pass"),
    "2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271": ("warn", "pass"),  # best seed, not mean
    "2026-03-23_LeakyReLU_LegalTTT_ParallelMuon": ("pass", "pass"),
    "2026-03-24_74M_Ternary_UNet_FP8_10L_8192BPE_YaRN_NeoMuon": ("warn", "warn"),  # no data lines
    "2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2": ("pass", "pass"),
    "2026-04-13_VarLenAttn_PhasingTTT2000": ("pass", "pass"),
    "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611": ("pass", "warn"),  # caseops
}


def test_every_fixture_record_is_listed() -> None:
    assert sorted(p.name for p in RECORDS.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_record_verdict(helm, ws, name: str) -> None:
    res = helm("audit", "dir", str(RECORDS / name), "--json")
    assert res.code == 0, res.err
    ev = res.json()
    by = {f["name"]: f for f in ev["findings"]}
    assert ev["mode"] == "logs-only"
    assert ev["verdict"] == "unverified", ev["reason"]
    assert "logs-only folder" in ev["reason"]
    assert ev["skipped"] == ["code.similarity", "logs.hyperparameters", "reproduction"]
    assert "code.similarity" not in by
    assert by["validate"]["status"] in ("pass", "warn")  # no record breaks a rule
    assert by["logs.steps"]["status"] == "pass"  # steps x step_avg = train_time in every log
    claim, data = EXPECTED[name]
    assert (by["claim.logs"]["status"], by["data.hazards"]["status"]) == (claim, data)
    assert ev["claimed_bpb"] is not None
    row = helm("audit", "ls", "--json").json()[0]
    assert (row["ref"], row["verdict"]) == (str(RECORDS / name), "unverified")


def test_best_seed_claims_are_named(helm, ws) -> None:
    ev = helm(
        "audit", "dir", str(RECORDS / "2026-03-24_74M_Ternary_UNet_FP8_10L_8192BPE_YaRN_NeoMuon"),
        "--json",
    ).json()  # fmt: skip
    claim = next(f for f in ev["findings"] if f["name"] == "claim.logs")
    assert "the best of 3 logged scores, not their mean" in claim["message"]
    assert claim["details"]["claimed_bpb"] == 1.1565
    ev = helm(
        "audit", "dir", str(RECORDS / "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"),
        "--json",
    ).json()  # fmt: skip
    data = next(f for f in ev["findings"] if f["name"] == "data.hazards")
    assert "custom dataset fineweb10B_sp8192_lossless_caps_caseops" in data["message"]
