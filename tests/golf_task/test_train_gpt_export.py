"""CPU unit tests of train_gpt.py's export: GPTQ, clip by standard deviations, the v2 format,
the artifact guard and the self-extracting code form.

GPTQ is judged by what it is for, the output error trace((W-Q) H (W-Q)^T) under the input
second moment H, against round-to-nearest with the same scales. Calibration reads a real
shard written here through the script's own loader.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import Tensor, nn

VOCAB = 64
BASE = {
    "NUM_LAYERS": "2",
    "MODEL_DIM": "32",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "MLP_MULT": "2",
    "VOCAB_SIZE": str(VOCAB),  # 0 would mean "ask the tokenizer"
    "TRAIN_SEQ_LEN": "16",
    "ROPE_DIMS": "4",
    "VE_DIM": "8",
    "VE_LAYERS": "1",
    "BIGRAM_BUCKETS": "32",
    "BIGRAM_DIM": "8",
    "LOOP_START": "0",
    "LOOP_END": "0",
    "LOOP_REPEATS": "1",
    "BOS_ID": "1",
    "FA3": "0",
    "COMPILE": "0",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(tg: ModuleType, **env: str) -> tuple[object, nn.Module]:
    args = tg.Hyperparameters.from_env({**BASE, **env})
    torch.manual_seed(0)
    model = tg.GPT(args)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return args, model.eval()


def output_error(w: Tensor, q: Tensor, s: Tensor, H: Tensor) -> float:
    d = w - q.float() * s.float()[:, None]
    return torch.trace(d @ H @ d.T).item()


def correlated_hessian(n: int, seed: int) -> Tensor:
    """X^T X of inputs mixed by a random matrix (strongly correlated features)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4 * n, n, generator=g) @ torch.randn(n, n, generator=g)
    return X.T @ X


# ---------------------------------------------------------------------------- GPTQ


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("bits", "clip_sds"), [(4, 0.0), (6, 0.0), (6, 3.0)])
def test_gptq_beats_round_to_nearest_on_output_error(train_gpt, seed, bits, clip_sds) -> None:
    H = correlated_hessian(96, seed)
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(100 + seed))
    pct = train_gpt.Hyperparameters().percentiles()
    q_rtn, s_rtn = train_gpt.quantize_rows(w, bits, pct, clip_sds)
    q, s = train_gpt.quantize_rows(w, bits, pct, clip_sds, hessian=H)
    assert torch.equal(s, s_rtn), "GPTQ changes the rounding, not the scales"
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 2 ** (bits - 1) - 1
    assert not torch.equal(q, q_rtn)
    assert output_error(w, q, s, H) < 0.8 * output_error(w, q_rtn, s_rtn, H)


def test_gptq_survives_dead_inputs(train_gpt: ModuleType) -> None:
    """An input that never fires (zero row and column of H) must not break the Cholesky."""
    H = correlated_hessian(64, 7)
    H[5, :], H[:, 5] = 0, 0
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(7))
    q, s = train_gpt.quantize_rows(w, 6, [1.0], 0.0, hessian=H)
    q_rtn, _ = train_gpt.quantize_rows(w, 6, [1.0], 0.0)
    assert int(q.abs().max()) <= 31
    assert output_error(w, q, s, H) < output_error(w, q_rtn, s, H)


def write_shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, tokens.size)
    path.write_bytes(header.tobytes() + tokens.astype("<u2").tobytes())


def calibrate(tg: ModuleType, tmp_path: Path, tied: bool) -> tuple:
    """(args, model, loader, hessians, tokens) after 3 calibration batches of 4x16 tokens."""
    args, model = tiny(tg, GPTQ_CALIB_BATCHES="3", TIE_EMBEDDINGS=str(int(tied)))
    tokens = np.random.default_rng(0).integers(0, VOCAB, 4000)
    write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    cpu = torch.device("cpu")
    loader = tg.DistributedTokenLoader(str(tmp_path / "fineweb_train_*.bin"), 0, 1, cpu)
    hessians, used = tg.collect_hessians(model, loader, args, 64, 1, cpu)
    assert used == 3
    return args, model, loader, hessians, tokens


def test_calibration_stops_at_the_training_caps_end(train_gpt: ModuleType, tmp_path: Path) -> None:
    """Calibration reads training data, so it counts inside the 600 s: once the cap's end has
    passed it takes one batch (a Hessian needs one) and stops, and says how many it took."""
    args, model = tiny(train_gpt, GPTQ_CALIB_BATCHES="5")
    write_shard(tmp_path / "fineweb_train_000000.bin", np.arange(4000) % VOCAB)
    cpu = torch.device("cpu")
    loader = train_gpt.DistributedTokenLoader(str(tmp_path / "fineweb_train_*.bin"), 0, 1, cpu)
    hessians, used = train_gpt.collect_hessians(model, loader, args, 64, 1, cpu, deadline=0.0)
    assert used == 1 and loader.stream.pos == 65
    assert all(h.diagonal().max() > 0 for h in hessians.values())


@pytest.mark.parametrize("tied", [True, False])
def test_collect_hessians(train_gpt: ModuleType, tmp_path: Path, tied: bool) -> None:
    args, model, loader, hessians, tokens = calibrate(train_gpt, tmp_path, tied)
    assert loader.stream.pos == 3 * 65, "GPTQ_CALIB_BATCHES micro-batches of training data"
    state = model.state_dict()
    quantized = {n for n, t in state.items() if train_gpt.quant_bits_for(n, t, args)}
    # tables are looked up, not multiplied: no Hessian (the tied embedding is also the head)
    tables = {"ve.weight", "bigram.table.weight"} | (set() if tied else {"tok_emb.weight"})
    assert set(hessians) == quantized - tables
    assert ("tok_emb.weight" in hessians) == tied
    for name, H in hessians.items():
        n = state[name].shape[1]
        assert H.shape == (n, n), name
        # every input channel saw data; a zero diagonal would make GPTQ zero that column
        assert H.diagonal().min() > 0, f"{name}: no calibration data reached this matrix"
        assert torch.allclose(H, H.T, atol=1e-4), name
        assert torch.linalg.eigvalsh(H.double()).min() > -1e-6 * H.diagonal().max(), name
    if tied:  # the head's inputs are the final hidden states of the batches it saw
        x = torch.from_numpy(tokens[: 3 * 65].astype(np.int64)).view(3, 65)[:, :-1]
        with torch.no_grad():
            h = torch.cat([model.hidden(xi.view(4, 16)).reshape(-1, 32) for xi in x])
        assert torch.allclose(hessians["tok_emb.weight"], h.T @ h, rtol=1e-4, atol=1e-3)
    assert all(m.hessian is None for m in model.modules() if hasattr(m, "hessian"))
    assert model.emb_hessian is None, "collection must switch itself off"


@pytest.mark.parametrize("tied", [True, False])
def test_calibrated_export_keeps_every_matrix(train_gpt: ModuleType, tmp_path: Path, tied) -> None:
    """End to end: GPTQ with the collected Hessians stays close to every original matrix."""
    args, model, _, hessians, _ = calibrate(train_gpt, tmp_path, tied)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    back = train_gpt.dequantize_state(train_gpt.quantize_state(state, args, hessians))
    for name in hessians:
        t = state[name]
        rel = ((back[name] - t).square().mean() / t.square().mean()).sqrt().item()
        assert rel < 0.25, (name, rel)


# ---------------------------------------------------------------------------- clip by std


def test_clip_sds_trades_precision_for_bytes(train_gpt: ModuleType) -> None:
    w = torch.distributions.StudentT(2.5).sample((64, 512))  # heavy tails: max >> std
    pct = train_gpt.Hyperparameters().percentiles()
    distinct, sizes = [], []
    for k in (2.0, 4.0, 8.0, 16.0):
        q, s = train_gpt.quantize_rows(w, 6, pct, clip_sds=k)
        assert torch.equal(s, (k * w.std(dim=1) / 31).half()), k  # k std, even beyond the max
        assert torch.equal(q, train_gpt.quantize_rows(w, 6, [1.0], clip_sds=k)[0])
        distinct.append(sum(len(r.unique()) for r in q))
        sizes.append(len(train_gpt.COMPRESSORS["zstd"](q.numpy().tobytes(), 22)))
    assert distinct == sorted(distinct, reverse=True) and distinct[0] > distinct[-1]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 1.2 * sizes[-1], sizes
    # 0: GPTQ-lite, the percentile candidates decide (plain max-abs with one candidate)
    q0, s0 = train_gpt.quantize_rows(w, 6, [1.0], clip_sds=0.0)
    assert torch.equal(s0, (w.abs().amax(dim=1) / 31).half())
    _, s_lite = train_gpt.quantize_rows(w, 6, pct, clip_sds=0.0)
    assert not torch.equal(s_lite, s0)


def test_clip_sds_per_kind_from_the_environment(train_gpt: ModuleType) -> None:
    _, model = tiny(train_gpt)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    env = {"GPTQ_LITE": "0", "CLIP_SDS_ATTN": "0", "CLIP_SDS_MLP": "1.5"}
    obj = train_gpt.quantize_state(state, train_gpt.Hyperparameters.from_env({**BASE, **env}))
    for name, e in obj["tensors"].items():
        if "q" not in e:
            continue
        t, qmax = state[name].float(), 2 ** (e["bits"] - 1) - 1
        kind = train_gpt.quant_kind(name, t)
        if kind == "mlp":
            want = 1.5 * t.std(dim=1) / qmax
        elif kind == "attn":
            want = t.abs().amax(dim=1) / qmax
        else:
            continue
        assert torch.equal(e["s"], want.half()), name


# ---------------------------------------------------------------------------- format v2


def parse_blob(tg: ModuleType, blob: bytes) -> tuple[dict, dict[str, bytes]]:
    """The header and each group's compressed frame, read by hand from the documented layout."""
    assert blob[:4] == tg.EXPORT_MAGIC
    n = int.from_bytes(blob[4:8], "little")
    header, pos, frames = json.loads(blob[8 : 8 + n]), 8 + n, {}
    for g, _method, length in header["groups"]:
        frames[g], pos = blob[pos : pos + length], pos + length
    assert pos == len(blob), "nothing after the last frame"
    return header, frames


def test_export_v2_round_trip_and_per_group_best_compressor(train_gpt: ModuleType) -> None:
    args, model = tiny(train_gpt)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    obj = train_gpt.quantize_state(state, args)
    obj["meta"] = {"looped": True}
    blob = train_gpt.export_blob(obj, args.zstd_level)
    again = train_gpt.quantize_state(state, args) | {"meta": obj["meta"]}
    assert blob == train_gpt.export_blob(again, args.zstd_level), "deterministic bytes"
    back, want = train_gpt.load_export(blob), train_gpt.dequantize_state(obj)
    assert back.keys() == want.keys() == state.keys()
    for name in state:
        assert torch.equal(back[name], want[name]), name
    train_gpt.GPT(args).load_state_dict(back, strict=True)
    header, frames = parse_blob(train_gpt, blob)
    assert header["format"] == train_gpt.EXPORT_FORMAT and header["meta"] == {"looped": True}
    assert train_gpt.export_header(blob) == header
    _, payloads = train_gpt.group_payloads(obj)
    assert set(frames) == set(payloads)
    for g, method, length in header["groups"]:
        sizes = {m: len(c(payloads[g], args.zstd_level)) for m, c in train_gpt.COMPRESSORS.items()}
        assert length == min(sizes.values()) and sizes[method] == length, (g, sizes)
        assert train_gpt.DECOMPRESSORS[method](frames[g]) == payloads[g], g
    with pytest.raises(ValueError):
        train_gpt.load_export(b"HGQ1" + blob[4:])


def test_export_v2_picks_lzma_or_zstd_per_group(train_gpt: ModuleType) -> None:
    """Sparse codes (range coding wins: lzma) next to dense ones (less framing: zstd), built by
    hand so that each compressor must win one group."""
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(256, 256, generator=g) < 0.03).to(torch.int8)
    sparse = mask * torch.randint(-2, 3, (256, 256), generator=g).to(torch.int8)
    dense = torch.randint(-31, 32, (64, 64), generator=g).to(torch.int8)
    obj = {"format": train_gpt.EXPORT_FORMAT, "tensors": {}}
    for name, q in [("blocks.0.mlp.fc.weight", sparse), ("blocks.0.attn.c_q.weight", dense)]:
        s = (torch.rand(q.size(0), generator=g) + 0.5).half()
        obj["tensors"][name] = {"q": q, "s": s, "bits": 6, "r": q.abs().half()}
    blob = train_gpt.export_blob(obj, 22)
    chosen = {grp: m for grp, m, _ in parse_blob(train_gpt, blob)[0]["groups"]}
    assert chosen["blocks.mlp.fc.weight"] == "lzma" and chosen["blocks.attn.c_q.weight"] == "zstd"
    back, want = train_gpt.load_export(blob), train_gpt.dequantize_state(obj)
    assert all(torch.equal(back[n], want[n]) for n in want)


# ---------------------------------------------------------------------------- artifact guard


def guard_obj(tg: ModuleType) -> tuple[object, dict]:
    """Two matrices of Gaussian weights at int4: plenty of +-1 codes, small enough to be fast."""
    g = torch.Generator().manual_seed(0)
    state = {
        "blocks.0.mlp.fc.weight": torch.randn(128, 128, generator=g),
        "blocks.0.attn.c_q.weight": torch.randn(64, 128, generator=g),
        "blocks.0.attn_scale": torch.ones(128),
    }
    env = {"QUANT_MLP_BITS": "4", "QUANT_ATTN_BITS": "4", "CLIP_SDS_MLP": "3", "CLIP_SDS_ATTN": "3"}
    args = tg.Hyperparameters.from_env({**env, "ZSTD_LEVEL": "19"})
    obj = tg.quantize_state(state, args)
    obj["meta"] = {"looped": False}
    return args, obj


def pm1(obj: dict) -> tuple[Tensor, Tensor]:
    """(r of every +-1 code, their count) over all quantized entries."""
    r = torch.cat([e["r"][e["q"].abs() == 1].float() for e in obj["tensors"].values() if "q" in e])
    return r, torch.tensor(r.numel())


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_prune_codes_zeroes_the_smallest_pm1_codes(train_gpt: ModuleType, fraction: float) -> None:
    _, obj = guard_obj(train_gpt)
    originals = {n: e["q"].clone() for n, e in obj["tensors"].items() if "q" in e}
    r_all, n_pm1 = pm1(obj)
    out, pruned = train_gpt.prune_codes(obj, fraction)
    k = int(fraction * int(n_pm1))
    zeroed, kept = [], []
    for name, q0 in originals.items():
        assert torch.equal(obj["tensors"][name]["q"], q0), "the input must stay as it was"
        q1, r = out["tensors"][name]["q"], obj["tensors"][name]["r"].float()
        changed = q1 != q0
        assert bool((q1[changed] == 0).all()) and bool((q0[changed].abs() == 1).all()), name
        zeroed.append(r[changed])
        kept.append(r[(q0.abs() == 1) & ~changed])
    zeroed, kept = torch.cat(zeroed), torch.cat(kept)
    assert zeroed.numel() == pruned
    assert zeroed.max() <= kept.min(), "only the +-1 codes with the smallest |w|/scale"
    ties = int((r_all == zeroed.max()).sum())  # r is float16: equal values go together
    assert k <= pruned < k + ties + 1
    assert out["meta"] == obj["meta"]
    assert train_gpt.prune_codes(obj, 0.0) == (obj, 0)


def test_fit_artifact_prunes_to_fit_refuses_or_leaves_alone(train_gpt: ModuleType) -> None:
    args, obj = guard_obj(train_gpt)
    level, code = args.zstd_level, 1000
    full = len(train_gpt.export_blob(obj, level))
    floor = len(train_gpt.export_blob(train_gpt.prune_codes(obj, 1.0)[0], level))
    assert floor < 0.9 * full, (floor, full)

    def fit(cap: int) -> tuple[bytes | None, list[str]]:
        lines: list[str] = []
        args.artifact_cap = cap
        return train_gpt.fit_artifact(obj, args, code, lines.append), lines

    blob, lines = fit(code + full + 10)
    assert blob == train_gpt.export_blob(obj, level)
    assert lines == [f"artifact:fits total:{code + full} cap:{code + full + 10}"]

    cap = code + (full + floor) // 2
    blob, lines = fit(cap)
    assert blob is not None and code + len(blob) <= cap
    last = lines[-1].split()
    assert last[0] == "artifact:pruned" and int(last[1].removeprefix("codes:")) > 0, lines
    assert f"total:{code + len(blob)}" in last and f"cap:{cap}" in last
    assert train_gpt.export_header(blob)["meta"] == obj["meta"]
    back = train_gpt.load_export(blob)
    assert back.keys() == train_gpt.dequantize_state(obj).keys()

    blob, lines = fit(code + floor)  # fits only with every +-1 code gone: still a blob
    assert blob is not None and code + len(blob) <= code + floor, lines

    blob, lines = fit(code + floor - 1)
    assert blob is None
    assert (
        lines[-1].startswith("artifact:over_cap total:") and f"cap:{code + floor - 1}" in lines[-1]
    )
    assert not any(line.startswith("artifact:pruned") for line in lines)


# ---------------------------------------------------------------------------- pack_source


def test_pack_source_runs_the_source_and_is_small(train_gpt: ModuleType, tmp_path: Path) -> None:
    source = (
        '"""A tiny stand-in script; its docstring repeats so that packing has work to do."""\n'
        + "# padding line, compressible padding line\n" * 40
        + "import hashlib, sys\n"
        + "print(__name__, hashlib.sha256(_HELM_SOURCE.encode()).hexdigest(), sys.argv[1:])\n"
        + "raise SystemExit(7)\n"
    )
    packed = train_gpt.pack_source(source)
    assert packed == train_gpt.pack_source(source), "deterministic bytes"
    assert len(packed.encode()) < len(source.encode())
    path = tmp_path / "packed.py"
    path.write_text(packed)
    run = subprocess.run(
        [sys.executable, str(path), "x"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 7, run.stderr
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert run.stdout.strip() == f"__main__ {digest} ['x']", "the source itself, as __main__"
    real = Path(train_gpt.__file__).read_text(encoding="utf-8")
    packed_real = train_gpt.pack_source(real)
    assert packed_real == train_gpt.pack_source(real)
    assert len(packed_real.encode()) < 0.5 * len(real.encode())
