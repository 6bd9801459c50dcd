"""Unit tests of train_gpt.py's own functions: byte table, quantization, windows, schedule."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

SPACE = "\u2581"


class FakeSP:
    """A SentencePiece stand-in whose pieces and flags are spelled out in the test."""

    def __init__(self, pieces: list[tuple[str, str]]):
        self.pieces = pieces  # (piece, kind) with kind in normal/control/unknown/unused/byte

    def vocab_size(self) -> int:
        return len(self.pieces)

    def id_to_piece(self, i: int) -> str:
        return self.pieces[i][0]

    def is_control(self, i: int) -> bool:
        return self.pieces[i][1] == "control"

    def is_unknown(self, i: int) -> bool:
        return self.pieces[i][1] == "unknown"

    def is_unused(self, i: int) -> bool:
        return self.pieces[i][1] == "unused"

    def is_byte(self, i: int) -> bool:
        return self.pieces[i][1] == "byte"


PIECES = [
    ("<unk>", "unknown"),  # 0
    ("<s>", "control"),  # 1
    ("</s>", "control"),  # 2
    ("<0xE2>", "byte"),  # 3
    (SPACE + "the", "normal"),  # 4: 3 bytes + a space
    ("he", "normal"),  # 5: 2 bytes
    (SPACE, "normal"),  # 6: only a space
    (SPACE + "h\u00e9", "normal"),  # 7: "hé" is 3 UTF-8 bytes + a space
    ("\u20ac", "normal"),  # 8: "€" is 3 UTF-8 bytes
    ("<reserved>", "unused"),  # 9
]


def test_byte_table_by_hand(train_gpt: ModuleType) -> None:
    base, space, boundary = train_gpt.build_byte_luts(FakeSP(PIECES), vocab_size=12)
    assert base.tolist() == [0, 0, 0, 1, 3, 2, 0, 3, 3, 0, 0, 0]
    assert space.tolist() == [False] * 4 + [True, False, True, True] + [False] * 4
    # control, unknown, unused and ids beyond the tokenizer (10, 11) are boundaries
    assert boundary.tolist() == [True, True, True] + [False] * 6 + [True, True, True]


@pytest.mark.parametrize(
    ("prev", "tgt", "expected"),
    [
        ([1], [4], [3]),  # "<s> ▁the": the space after a boundary is not a byte
        ([5], [4], [4]),  # "he ▁the": 1 space + 3
        ([0], [4], [3]),  # after <unk> (boundary) no space either
        ([9], [7], [3]),  # after an unused piece (boundary): "hé" only
        ([4], [7], [4]),  # "▁the ▁hé": space + 3 bytes
        ([4], [6], [1]),  # a lone ▁ after text is one byte
        ([6], [3], [1]),  # byte-fallback piece: 1 byte, never a space
        ([4], [8], [3]),  # "€" without a leading space
        ([4], [1], [0]),  # control tokens carry no bytes
        ([4, 5, 6, 3], [5, 6, 3, 3], [2, 1, 1, 1]),
    ],
)
def test_target_bytes_by_hand(train_gpt: ModuleType, prev, tgt, expected) -> None:
    luts = train_gpt.build_byte_luts(FakeSP(PIECES), vocab_size=10)
    got = train_gpt.target_bytes(torch.tensor(prev), torch.tensor(tgt), luts)
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "text",
    [
        "the quick brown fox",
        "Return a 3-tuple (x, y, z) of the \u20ac prices, \u00e9t\u00e9 and \u65e5\u672c.",
        "emoji \U0001f600 and a tab-free line",
        "x",
    ],
)
def test_bytes_of_an_encoded_document_equal_its_utf8_length(
    train_gpt: ModuleType, tiny_data_dir: Path, text: str
) -> None:
    """A whole document after BOS counts exactly its UTF-8 bytes, byte fallback included."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(
        model_file=str(tiny_data_dir / "tokenizers" / "fineweb_1024_bpe.model")
    )
    ids = [sp.bos_id(), *sp.encode(text)]
    luts = train_gpt.build_byte_luts(sp, 1024)
    t = torch.tensor(ids)
    total = int(train_gpt.target_bytes(t[:-1], t[1:], luts).sum())
    assert total == len(text.encode("utf-8"))


@pytest.mark.parametrize(("bits", "rel_rmse_max"), [(8, 0.01), (6, 0.04), (5, 0.08)])
def test_quantize_dequantize_error_bounds(
    train_gpt: ModuleType, bits: int, rel_rmse_max: float
) -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 512) * torch.rand(64, 1)  # rows of different scales
    q, s = train_gpt.quantize_rows(w, bits, [1.0])
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and s.dtype == torch.float16
    assert int(q.abs().max()) <= qmax
    dq = train_gpt.dequantize_rows(q, s)
    # Max-abs scaling: every element within half a step (plus fp16 rounding of the scale).
    half_step = s.float()[:, None] / 2
    assert bool(((dq - w).abs() <= half_step * 1.01 + 1e-6).all())
    rel = ((dq - w).square().mean() / w.square().mean()).sqrt().item()
    assert rel < rel_rmse_max


def test_fewer_bits_means_more_error(train_gpt: ModuleType) -> None:
    torch.manual_seed(1)
    w = torch.randn(32, 256)
    errs = []
    for bits in (8, 6, 5, 4):
        q, s = train_gpt.quantize_rows(w, bits, [1.0])
        errs.append((train_gpt.dequantize_rows(q, s) - w).square().sum().item())
    assert errs == sorted(errs) and errs[0] < errs[-1] / 10


@pytest.mark.parametrize("dist", ["gaussian", "student_t", "outliers", "zeros_row"])
@pytest.mark.parametrize("bits", [8, 6, 5])
def test_gptq_lite_never_worse_than_plain_clipping(
    train_gpt: ModuleType, dist: str, bits: int
) -> None:
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(48, 384, generator=g)
    if dist == "student_t":
        w = torch.distributions.StudentT(3.0).sample((48, 384))
    elif dist == "outliers":
        w[:, :3] *= 25
    elif dist == "zeros_row":
        w[5] = 0
    percentiles = train_gpt.Hyperparameters().percentiles()
    assert 1.0 in percentiles and len(percentiles) >= 5

    def row_err(ps: list[float]) -> torch.Tensor:
        q, s = train_gpt.quantize_rows(w, bits, ps)
        return (train_gpt.dequantize_rows(q, s) - w).square().sum(dim=1)

    plain, lite = row_err([1.0]), row_err(percentiles)
    assert bool((lite <= plain).all())
    if dist in ("student_t", "outliers") and bits <= 6:
        assert lite.sum() < plain.sum(), "heavy tails: clipping must pay off"


def test_export_round_trip_restores_every_tensor(train_gpt: ModuleType) -> None:
    env = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1"}
    env.update(VOCAB_SIZE="1024", VE_LAYERS="1", VE_DIM="16")
    args = train_gpt.Hyperparameters.from_env({**env, "BIGRAM_BUCKETS": "64", "BIGRAM_DIM": "16"})
    torch.manual_seed(0)
    model = train_gpt.GPT(args)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = model.state_dict()
    blob, raw_len = train_gpt.export_model(state, args)
    assert len(blob) < raw_len
    back = train_gpt.load_export(blob)
    assert back.keys() == state.keys()
    percentiles = args.percentiles()
    for name, t in state.items():
        bits = train_gpt.quant_bits_for(name, t, args)
        assert back[name].shape == t.shape
        if bits:  # exactly what the quantizer produced, and close to the original
            clip = getattr(args, f"clip_sds_{train_gpt.quant_kind(name, t)}", 0.0)
            q, s = train_gpt.quantize_rows(t, bits, percentiles, clip)
            assert torch.equal(back[name], train_gpt.dequantize_rows(q, s)), name
            rel = ((back[name] - t).square().mean() / t.square().mean()).sqrt().item()
            # the default clip is 13 row stds at int6: steps of 0.42 std, rms error 0.12 std
            assert rel < 0.15, name
        else:  # float16 passthrough
            assert torch.allclose(back[name], t, rtol=1e-3, atol=1e-4), name
    fresh = train_gpt.GPT(args)
    fresh.load_state_dict(back, strict=True)


def test_bit_widths_go_where_configured(train_gpt: ModuleType) -> None:
    args = train_gpt.Hyperparameters.from_env({"QUANT_ATTN_BITS": "8", "QUANT_MLP_BITS": "4"})
    assert (
        train_gpt.quant_bits_for("blocks.1.attn.ve_proj.weight", m := torch.zeros(4, 4), args) == 8
    )
    assert train_gpt.quant_bits_for("ve.weight", m, args) == 7
    m = torch.zeros(4, 4)
    assert train_gpt.quant_bits_for("blocks.0.attn.c_q.weight", m, args) == 8
    assert train_gpt.quant_bits_for("blocks.3.mlp.fc.weight", m, args) == 4
    assert train_gpt.quant_bits_for("tok_emb.weight", m, args) == 7
    assert train_gpt.quant_bits_for("bigram.table.weight", m, args) == 6
    assert train_gpt.quant_bits_for("blocks.0.attn.q_gain", torch.zeros(4), args) == 0
    assert train_gpt.quant_bits_for("blocks.0.resid_mix", m, args) == 0
    assert train_gpt.quant_label(args) == "int8_int4+zstd"


@settings(max_examples=60, deadline=None, database=None)
@given(n=st.integers(1, 700), seq_len=st.integers(1, 128), stride=st.integers(0, 130))
def test_eval_windows_score_every_target_once(train_gpt: ModuleType, n, seq_len, stride) -> None:
    counts = [0] * n
    windows = train_gpt.eval_windows(n, seq_len, stride)
    for idx, (start, length, first) in enumerate(windows):
        assert 1 <= length <= seq_len and start + length <= n
        if stride > 0 and n > seq_len and idx > 0:
            # every target scored here has at least seq_len - stride tokens of context
            assert first >= seq_len - min(stride, seq_len)
        for pos in range(first, length):
            counts[start + pos] += 1
    assert counts == [1] * n


def _tiny_model(train_gpt: ModuleType, **env: str):
    base = {"NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1"}
    base.update({"MLP_MULT": "2", "BIGRAM_BUCKETS": "32", "BIGRAM_DIM": "8", "TRAIN_SEQ_LEN": "16"})
    base.update({"VAL_BATCH_SIZE": "64", "VOCAB_SIZE": "64", "ROPE_DIMS": "4", "QAT_ENABLED": "1"})
    base.update(env)
    args = train_gpt.Hyperparameters.from_env(base)
    torch.manual_seed(0)
    model = train_gpt.GPT(args)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return args, model.eval()


def test_evaluate_matches_a_direct_computation(train_gpt: ModuleType) -> None:
    args, model = _tiny_model(train_gpt)
    torch.manual_seed(3)
    tokens = torch.randint(0, 64, (101,))  # 100 targets: 6 full windows of 16 and one of 4
    luts = (torch.randint(1, 4, (64,)), torch.rand(64) < 0.5, torch.rand(64) < 0.1)
    cpu = torch.device("cpu")
    loss, bpb = train_gpt.evaluate(model.logits, tokens, luts, args, 0, 1, cpu)
    nll, nbytes = 0.0, 0
    with torch.no_grad():
        for s in range(0, 100, 16):
            x, y = tokens[s : min(s + 16, 100)][None], tokens[s + 1 : min(s + 17, 101)][None]
            nll += torch.nn.functional.cross_entropy(model.logits(x)[0], y[0], reduction="sum")
            nbytes += int(train_gpt.target_bytes(x, y, luts).sum())
    assert loss == pytest.approx(nll.item() / 100, rel=1e-5)
    assert bpb == pytest.approx(nll.item() / math.log(2) / nbytes, rel=1e-5)
    # With whole windows only, stride == seq_len is the same partition: same numbers.
    whole = tokens[:97]
    assert train_gpt.evaluate(model.logits, whole, luts, args, 0, 1, cpu, stride=16) == (
        pytest.approx(train_gpt.evaluate(model.logits, whole, luts, args, 0, 1, cpu), rel=1e-6)
    )
    # Sliding windows give the tail targets more context, so the score moves, but only a bit.
    loss4, _ = train_gpt.evaluate(model.logits, tokens, luts, args, 0, 1, cpu, stride=4)
    assert loss4 != loss and abs(loss4 - loss) < 0.5


def test_env_parsing(train_gpt: ModuleType) -> None:
    H = train_gpt.Hyperparameters
    args = H.from_env({"ITERATIONS": "2e4", "TIE_EMBEDDINGS": "0", "MATRIX_LR": "0.1", "SEED": "7"})
    assert (args.iterations, args.tie_embeddings, args.matrix_lr, args.seed) == (
        20000,
        False,
        0.1,
        7,
    )
    assert args.run_id, "a missing RUN_ID becomes a fresh uuid"
    assert H.from_env({"GPTQ_LITE": "off"}).percentiles() == [1.0]
    with pytest.raises(ValueError, match="not a boolean"):
        H.from_env({"EMA_ENABLED": "maybe"})
    defaults = H()
    assert (defaults.num_layers, defaults.model_dim, defaults.train_seq_len) == (11, 512, 2048)
    assert (defaults.quant_attn_bits, defaults.quant_mlp_bits, defaults.quant_embed_bits) == (
        6,
        6,
        7,
    )
    assert defaults.vocab_size == 0, "0: the tokenizer's piece count"
    with pytest.raises(ValueError, match="VOCAB_SIZE=0"):
        train_gpt.GPT(defaults)


def test_lr_schedule_warms_down_by_steps_or_by_time(train_gpt: ModuleType) -> None:
    args = train_gpt.Hyperparameters.from_env(
        {"ITERATIONS": "100", "WARMDOWN_ITERS": "20", "MAX_WALLCLOCK_SECONDS": "0", "MIN_LR": "0"}
    )
    assert train_gpt.lr_scale(0, 0.0, args) == 1.0
    assert train_gpt.lr_scale(90, 0.0, args) == pytest.approx(0.5)
    assert train_gpt.lr_scale(100, 0.0, args) == 0.0
    floored = train_gpt.Hyperparameters.from_env({"ITERATIONS": "100", "WARMDOWN_ITERS": "20"})
    assert floored.min_lr == 0.1
    assert train_gpt.lr_scale(100, 0.0, floored) == pytest.approx(0.1), "MIN_LR floor"
    assert train_gpt.lr_scale(90, 0.0, floored) == pytest.approx(0.5), "above the floor"
    # GPTQ off: no calibration seconds reserved, so the time-based warm-down sees all 10 s
    timed = train_gpt.Hyperparameters.from_env(
        {"ITERATIONS": "100000", "WARMDOWN_ITERS": "20", "MAX_WALLCLOCK_SECONDS": "10", "GPTQ": "0"}
    )
    # 10 ms per step so far: 20 warm-down steps = 200 ms; 100 ms left -> half way down
    assert train_gpt.lr_scale(990, 9900.0, timed) == pytest.approx(0.5)
    warm = train_gpt.Hyperparameters.from_env({"LR_WARMUP_STEPS": "10"})
    assert train_gpt.lr_scale(4, 0.0, warm) == pytest.approx(0.5)


def test_qat_fake_quantizes_forward_and_passes_gradients(train_gpt: ModuleType) -> None:
    args, model = _tiny_model(train_gpt)
    x = torch.randint(0, 64, (2, 16))
    y = torch.randint(0, 64, (2, 16))
    before = model.logits(x)
    model.set_qat(True)
    during = model.logits(x)
    assert not torch.allclose(before, during)
    loss = model(x, y)
    loss.backward()
    assert model.blocks[0].mlp.fc.weight.grad.abs().sum() > 0
    model.set_qat(False)
    assert torch.allclose(model.logits(x), before)


def test_newton_schulz_orthogonalizes(train_gpt: ModuleType) -> None:
    """The quintic iteration pushes the bulk of the singular values near 1 (not exactly)."""
    torch.manual_seed(0)
    for shape in [(64, 64), (128, 32), (32, 96)]:
        g = torch.randn(shape) * torch.logspace(-2, 1, shape[1])  # badly scaled columns
        sv = torch.linalg.svdvals(train_gpt.newton_schulz(g, 5))
        assert sv.max().item() < 1.3, (shape, sv)
        assert 0.6 < sv.median().item() < 1.2, (shape, sv)


def test_the_script_keeps_to_the_competitions_1500_line_cap(train_gpt: ModuleType) -> None:
    source = Path(train_gpt.__file__).read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 1500
