"""Legal score-first test-time training (``ttt_evaluate``) on a tiny real model: every target
scored once and before the model adapts on it, a time budget that stops adapting but not
scoring, and TTT with a zero learning rate equal to the sliding-window score."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
import torch
from gpt_kit import VOCAB, tiny
from torch import Tensor, nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ttt_case(tg: ModuleType, lr: str) -> tuple[object, nn.Module, Tensor, tuple]:
    """3,000 random targets in chunks of 200 (not a multiple of the 16-token windows), scored
    with stride 8: windows straddle chunk boundaries."""
    args, model = tiny(tg, TTT_LR=lr, TTT_CHUNK_TOKENS="200", EVAL_STRIDE="8", TTT_EPOCHS="1")
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (3001,), generator=g)
    luts = (
        torch.randint(1, 4, (VOCAB,), generator=g),
        torch.rand(VOCAB, generator=g) < 0.5,
        torch.rand(VOCAB, generator=g) < 0.1,
    )
    return args, model, tokens, luts


def test_ttt_scores_every_target_once_before_adapting_on_it(train_gpt: ModuleType) -> None:
    args, model, tokens, luts = _ttt_case(train_gpt, "0.01")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events: list[tuple[str, int, int]] = []
    loss, bpb, adapted, chunks = train_gpt.ttt_evaluate(
        model, tokens, luts, args, 0, 1, torch.device("cpu"), trace=lambda *e: events.append(e)
    )
    assert adapted == chunks - 1 == sum(kind == "adapt" for kind, _, _ in events)
    n = tokens.numel() - 1
    assert math.isfinite(loss) and math.isfinite(bpb)
    counts = [0] * n
    scored_so_far: set[int] = set()
    adapted_to = 0
    kinds = {kind for kind, _, _ in events}
    assert kinds == {"score", "adapt"}
    for kind, lo, hi in events:
        assert 0 <= lo < hi <= n, (kind, lo, hi)
        if kind == "score":
            for t in range(lo, hi):
                counts[t] += 1
            scored_so_far.update(range(lo, hi))
        else:
            missing = set(range(lo, hi)) - scored_so_far
            assert not missing, f"adapting on {lo}..{hi} before scoring {sorted(missing)[:5]}"
            assert lo == adapted_to, "one pass, chunks in order"
            adapted_to = hi
    assert counts == [1] * n, "every target scored exactly once"
    assert adapted_to >= n - 200, "every chunk but the last is trained on"
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "TTT must update the weights"


def test_ttt_with_zero_lr_equals_the_sliding_window_score(train_gpt: ModuleType) -> None:
    args, model, tokens, luts = _ttt_case(train_gpt, "0")
    cpu = torch.device("cpu")
    ref = train_gpt.evaluate(model.logits, tokens, luts, args, 0, 1, cpu, stride=args.eval_stride)
    got = train_gpt.ttt_evaluate(model, tokens, luts, args, 0, 1, cpu)
    assert got[0] == pytest.approx(ref[0], abs=1e-9)
    assert got[1] == pytest.approx(ref[1], abs=1e-9)
    plain = train_gpt.evaluate(model.logits, tokens, luts, args, 0, 1, cpu)
    assert abs(plain[0] - ref[0]) > 1e-6, "the stride must matter here, else the test is blind"


def test_ttt_stops_adapting_after_its_time_budget_but_scores_everything(
    train_gpt: ModuleType,
) -> None:
    """TTT_MAX_SECONDS keeps TTT inside the evaluation cap: past it, no more SGD steps, and the
    remaining chunks are still scored (with the model as it is), each target once."""
    args, model, tokens, luts = _ttt_case(train_gpt, "0.01")
    args.ttt_max_seconds = 0.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events: list[tuple[str, int, int]] = []
    cpu = torch.device("cpu")
    loss, bpb, adapted, chunks = train_gpt.ttt_evaluate(
        model, tokens, luts, args, 0, 1, cpu, trace=lambda *e: events.append(e)
    )
    assert adapted == 0 and chunks > 3
    assert {kind for kind, _, _ in events} == {"score"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    ref = train_gpt.evaluate(model.logits, tokens, luts, args, 0, 1, cpu, stride=args.eval_stride)
    assert (loss, bpb) == pytest.approx(ref, abs=1e-9)
