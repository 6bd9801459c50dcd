"""CPU unit tests of train_gpt.py's model and optimizer techniques, each on and off.

Each test builds a tiny real model (milliseconds) and checks the behaviour a switch is for:
which tensors exist, what an output may and may not depend on, what an optimizer step does.
The export side (GPTQ, compression, artifact guard, pack_source) is in test_train_gpt_export.py,
test-time training in test_train_gpt_ttt.py.
"""

from __future__ import annotations

import math
from types import ModuleType

import pytest
import torch
import torch._dynamo.testing
from gpt_kit import VOCAB, ids, tiny
from torch import Tensor, nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def record_inputs(modules: dict[str, nn.Module]) -> tuple[dict[str, tuple], list]:
    """Forward pre-hooks keeping each module's latest positional inputs (and the handles)."""
    seen: dict[str, tuple] = {}
    handles = []
    for key, m in modules.items():

        def hook(_m: nn.Module, inputs: tuple, key: str = key) -> None:
            seen[key] = tuple(t.detach().clone() if isinstance(t, Tensor) else t for t in inputs)

        handles.append(m.register_forward_pre_hook(hook))
    return seen, handles


# ---------------------------------------------------------------------------- MLP, norms, init


@pytest.mark.parametrize("slope", [0.5, 0.25, 0.0])
def test_leaky_relu_squared_activation(train_gpt: ModuleType, slope: float) -> None:
    _, model = tiny(train_gpt, LEAKY_SLOPE=str(slope))
    mlp = model.blocks[0].mlp
    seen, _ = record_inputs({"proj": mlp.proj})
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        mlp(x)
        h = mlp.fc(x)
    act = seen["proj"][0]
    assert bool((h < 0).any()) and bool((h > 0).any())
    if slope == 0:
        assert torch.equal(act, torch.relu(h).square()), "LEAKY_SLOPE=0 must be exactly ReLU^2"
    else:
        want = torch.where(h > 0, h.square(), h.square() * slope**2)
        assert torch.allclose(act, want, rtol=1e-5, atol=1e-7)
        assert bool((act[h < 0] > 0).all()), "negative pre-activations must pass through"


@pytest.mark.parametrize("on", [True, False])
def test_ln_scale_scales_block_inputs_by_depth(train_gpt: ModuleType, on: bool) -> None:
    _, model = tiny(train_gpt, LN_SCALE=str(int(on)), PARALLEL_FROM="2")
    mods = {
        f"{i}.{part}": getattr(b, part)
        for i, b in enumerate(model.blocks)
        for part in ("attn", "mlp")
    }
    seen, _ = record_inputs(mods)
    with torch.no_grad():
        model.logits(ids())
    for i in range(4):
        want = 1 / math.sqrt(i + 1) if on else 1.0
        assert model.blocks[i].norm_scale == pytest.approx(want)
        for part in ("attn", "mlp"):  # parallel (2, 3) and sequential (0, 1) blocks alike
            rms = seen[f"{i}.{part}"][0].square().mean(-1).sqrt()
            assert torch.allclose(rms, torch.full_like(rms, want), rtol=1e-4), (i, part)


def _is_output(name: str) -> bool:
    return name.endswith("proj") and not name.endswith("ve_proj")


@pytest.mark.parametrize("on", [True, False])
def test_ortho_init(train_gpt: ModuleType, on: bool) -> None:
    args, model = tiny(train_gpt, noise=0.0, ORTHO_INIT=str(int(on)))
    L, n_out, n_in = args.num_layers, 0, 0
    for bi, block in enumerate(model.blocks):
        for name, m in block.named_modules():
            if not isinstance(m, train_gpt.CastedLinear):
                continue
            sv = torch.linalg.svdvals(m.weight.detach())
            where = f"blocks.{bi}.{name}"
            if _is_output(name):
                n_out += 1
                if on:
                    want = torch.full_like(sv, 1 / math.sqrt(2 * L))
                    assert torch.allclose(sv, want, rtol=1e-4), where
                else:
                    assert not bool(m.weight.any()), f"{where}: output projections start at zero"
            else:
                n_in += 1
                if on:
                    assert torch.allclose(sv, torch.ones_like(sv), rtol=1e-4), where
                else:
                    assert sv.max() / sv.min() > 1.5, f"{where}: default init is not orthogonal"
    assert n_out == 2 * L and n_in == 4 * L + 2  # c_q, c_k, c_v, fc per layer + 2 ve_proj


# ---------------------------------------------------------------------------- value embeddings


def test_value_embeddings_exist_only_on_listed_layers(train_gpt: ModuleType) -> None:
    _, model = tiny(train_gpt, VE_LAYERS="1,3", VE_DIM="8")
    names = {n: p.shape for n, p in model.named_parameters() if n == "ve.weight" or "ve_" in n}
    assert names == {
        "ve.weight": (VOCAB, 8),
        "blocks.1.attn.ve_proj.weight": (16, 8),  # kv_heads * head_dim = 2 * 8
        "blocks.3.attn.ve_proj.weight": (16, 8),
    }
    _, off = tiny(train_gpt, VE_LAYERS="")
    assert off.ve is None
    assert not [n for n, _ in off.named_parameters() if n.startswith("ve.") or "ve_proj" in n]


def test_value_embedding_row_affects_outputs_from_its_position_on(train_gpt: ModuleType) -> None:
    _, model = tiny(train_gpt)
    x, p = ids(), 6
    with torch.no_grad():
        before = model.logits(x)
        model.ve.weight[x[0, p]] += 1.0
        after = model.logits(x)
    assert torch.equal(before[0, :p], after[0, :p]), "earlier positions must not see it"
    moved = (after[0, p:] - before[0, p:]).abs().amax(-1)
    assert bool((moved > 1e-4).all()), moved


# ---------------------------------------------------------------------------- attention


def _own_value_components(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Per layer, the attention output's component along the token's own value, per position
    and head, in units of that value's norm (a cosine would be noise where XSA leaves ~0)."""
    attns = {i: b.attn for i, b in enumerate(model.blocks)}
    seen, _ = record_inputs({**{f"in{i}": a for i, a in attns.items()},
                             **{f"y{i}": a.proj for i, a in attns.items()}})  # fmt: skip
    with torch.no_grad():
        model.logits(x)
        out = []
        for i, a in attns.items():
            h_in, ve = seen[f"in{i}"]
            v = a.c_v(h_in)
            if a.ve_proj is not None:
                v = v + a.ve_proj(ve)
            B, T, _ = v.shape
            v = v.view(B, T, a.kv_heads, a.head_dim).repeat_interleave(a.heads // a.kv_heads, 2)
            y = seen[f"y{i}"][0].view(B, T, a.heads, a.head_dim)
            out.append((y * v).sum(-1) / v.square().sum(-1))
    return out


@pytest.mark.parametrize(("n", "xsa"), [(2, [False, False, True, True]), (0, [False] * 4)])
def test_xsa_removes_the_own_value_direction(train_gpt: ModuleType, n: int, xsa: list) -> None:
    _, model = tiny(train_gpt, XSA_LAST_N=str(n))
    assert [b.attn.xsa for b in model.blocks] == xsa
    for layer, along in enumerate(_own_value_components(model, ids())):
        if xsa[layer]:
            assert along.abs().max() < 1e-5, (layer, along.abs().max())
        else:  # plain attention: position 0 attends only to itself, its output is its value
            assert torch.allclose(along[:, 0], torch.ones_like(along[:, 0]), atol=1e-5), layer
            assert along[:, 1:].abs().max() > 0.1, layer


@pytest.mark.parametrize("gain", [0.0, 5.0])
def test_qk_gain_init_sets_attention_sharpness(train_gpt: ModuleType, gain: float) -> None:
    """q and k are unit-RMS, so the gain is the attention temperature; at 0 every query weighs
    all earlier positions equally and the output is the running mean of the values."""
    _, model = tiny(train_gpt, noise=0.0, QK_GAIN_INIT=str(gain), XSA_LAST_N="0", VE_LAYERS="")
    a = model.blocks[0].attn
    assert torch.equal(a.q_gain.detach(), torch.full((4,), gain))
    seen, _ = record_inputs({"in": a, "y": a.proj})
    with torch.no_grad():
        model.logits(ids())
        v = a.c_v(seen["in"][0]).view(1, 16, 2, 8).repeat_interleave(2, dim=2)
    running_mean = v.cumsum(1) / torch.arange(1, 17).view(1, 16, 1, 1)
    y = seen["y"][0].view(1, 16, 4, 8)
    uniform = torch.allclose(y, running_mean, atol=1e-5)
    assert uniform == (gain == 0.0)


# ---------------------------------------------------------------------------- SmearGate


def _block0_input(model: nn.Module, x: Tensor) -> Tensor:
    seen, handles = record_inputs({"b0": model.blocks[0]})
    with torch.no_grad():
        model.logits(x)
    for h in handles:
        h.remove()
    return seen["b0"][0][0]


@pytest.mark.parametrize("bos_aware", [True, False])
def test_smear_gate_never_mixes_across_a_document_start(train_gpt: ModuleType, bos_aware) -> None:
    _, model = tiny(train_gpt, SMEAR_BOS=str(int(bos_aware)))
    p, pool = 5, ids(17)
    a, other = pool[:, :16].clone(), int(pool[0, 16])  # other: a token not in a
    a[0, p] = 1  # BOS_ID: a document starts here
    b = a.clone()
    b[0, p - 1] = other  # another token just before the document start
    ha, hb = _block0_input(model, a), _block0_input(model, b)
    assert not torch.equal(ha[p - 1], hb[p - 1])
    if bos_aware:
        assert torch.equal(ha[p], hb[p]), "the BOS position must not see the previous document"
    else:
        assert (ha[p] - hb[p]).abs().max() > 1e-4, "plain SmearGate mixes in the previous token"
    c = a.clone()
    c[0, p - 2] = other  # a non-BOS position always takes in its predecessor
    assert (_block0_input(model, c)[p - 1] - ha[p - 1]).abs().max() > 1e-4


def test_smear_gate_off_leaves_the_embedding(train_gpt: ModuleType) -> None:
    _, model = tiny(train_gpt, SMEAR_GATE="0")
    x = ids()
    assert model.smear is None
    want = torch.nn.functional.rms_norm(model.tok_emb(x)[0], (32,)).detach()
    assert torch.equal(_block0_input(model, x), want)


# ---------------------------------------------------------------------------- parallel residuals


@pytest.mark.parametrize(("start", "parallel"), [(2, [0, 0, 1, 1]), (-1, [0, 0, 0, 0])])
def test_parallel_block_mlp_ignores_its_attention(train_gpt: ModuleType, start, parallel) -> None:
    _, model = tiny(train_gpt, PARALLEL_FROM=str(start))
    assert [int(b.parallel) for b in model.blocks] == parallel
    seen, _ = record_inputs({f"{i}": b.mlp for i, b in enumerate(model.blocks)})
    x = ids()
    with torch.no_grad():
        model.logits(x)
        ref = {k: v[0] for k, v in seen.items()}
        for i, block in enumerate(model.blocks):
            block.attn_scale.mul_(3.0)  # only this block's attention output changes
            model.logits(x)
            block.attn_scale.div_(3.0)
            same = torch.allclose(seen[f"{i}"][0], ref[f"{i}"], rtol=0, atol=1e-6)
            assert same == bool(parallel[i]), i
            for j in range(i):  # earlier blocks are untouched either way
                assert torch.allclose(seen[f"{j}"][0], ref[f"{j}"], atol=1e-6)


# ---------------------------------------------------------------------------- depth recurrence


def test_layer_order(train_gpt: ModuleType) -> None:
    H = train_gpt.Hyperparameters
    env = {"NUM_LAYERS": "11", "LOOP_START": "3", "LOOP_END": "5"}
    twice = H.from_env({**env, "LOOP_REPEATS": "1"})
    thrice = H.from_env({**env, "LOOP_REPEATS": "2"})
    off = H.from_env({**env, "LOOP_END": "-1"})
    plain = list(range(11))
    assert train_gpt.layer_order(twice, True) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]
    assert train_gpt.layer_order(thrice, True) == [0, 1, 2, *[3, 4, 5] * 3, 6, 7, 8, 9, 10]
    assert train_gpt.layer_order(twice, False) == plain, "before LOOP_AT the loop is off"
    assert train_gpt.layer_order(off, True) == plain, "LOOP_END=-1 turns the loop off"
    one = H.from_env({**env, "LOOP_START": "4", "LOOP_END": "4", "LOOP_REPEATS": "1"})
    assert train_gpt.layer_order(one, True) == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10]


def test_looped_model_runs_its_layer_order_and_uses_every_skip(train_gpt: ModuleType) -> None:
    args, model = tiny(train_gpt)
    assert train_gpt.layer_order(args, True) == [0, 1, 2, 1, 2, 3]
    assert model.n_skip == 3 and model.skip_weights.shape == (3, 32)
    calls: list[int] = []
    for i, b in enumerate(model.blocks):
        b.register_forward_pre_hook(lambda _m, _in, i=i: calls.append(i))
    x, y = ids(), ids(seed=2)
    used = {}
    for looped in (False, True):
        model.looped = looped
        calls.clear()
        model.zero_grad()
        model(x, y).backward()
        assert calls == train_gpt.layer_order(args, looped)
        used[looped] = [bool(g.abs().sum() > 0) for g in model.skip_weights.grad]
    # U-Net: the first half of the order feeds the second half, last in first out
    assert used == {False: [True, True, False], True: [True, True, True]}
    with torch.no_grad():
        model.looped = False
        a = model.logits(x)
        model.looped = True
        b = model.logits(x)
    assert (a - b).abs().max() > 1e-3, "the loop must change the outputs"
    _, flat = tiny(train_gpt, LOOP_END="-1")
    assert flat.n_skip == 2
    _, no_skips = tiny(train_gpt, UNET_SKIPS="0")
    assert no_skips.n_skip == 0 and no_skips.skip_weights is None


# ---------------------------------------------------------------------------- optimizers


def _ill_conditioned(rows: int, cols: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g))
    return u @ torch.diag(torch.logspace(-3, 0, k)) @ v.T  # condition number 1000


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 96)])
def test_polar_express_beats_the_quintic_on_ill_conditioned_input(train_gpt, shape) -> None:
    G = _ill_conditioned(*shape, seed=shape[0] + shape[1])
    polar = torch.linalg.svdvals(train_gpt.newton_schulz(G, 5, polar=True))
    quintic = torch.linalg.svdvals(train_gpt.newton_schulz(G, 5, polar=False))
    assert (polar - 1).abs().max() < (quintic - 1).abs().max()
    assert (polar - 1).abs().mean() < 0.7 * (quintic - 1).abs().mean()
    assert polar.max() < 1.2


@pytest.mark.parametrize("polar", [True, False])
def test_build_optimizers_passes_polar_ns_and_keeps_fp32_reduce_on_cpu(train_gpt, polar) -> None:
    args, model = tiny(train_gpt, POLAR_NS=str(int(polar)), MUON_BF16_REDUCE="1", COMPILE_NS="1")
    muon = [o for o in train_gpt.build_optimizers(model, args, fused=False) if
            isinstance(o, train_gpt.Muon)][0]  # fmt: skip
    G = _ill_conditioned(32, 32, seed=0)
    assert torch.equal(muon.ns(G, 5), train_gpt.newton_schulz(G, 5, polar))
    assert not torch.equal(muon.ns(G, 5), train_gpt.newton_schulz(G, 5, not polar))
    assert muon.reduce_dtype == torch.float32, "bf16 reduce is for CUDA all-reduces only"


@pytest.mark.parametrize("reduce_dtype", [torch.float32, torch.bfloat16])
def test_muon_step_by_hand(train_gpt: ModuleType, reduce_dtype: torch.dtype) -> None:
    """Nesterov momentum, orthogonalized, scaled by sqrt(rows/cols) for tall matrices, decayed.
    One process sends nothing, so a bf16 reduce dtype must not round its update (the bf16
    buffer is only for the all-reduce between ranks)."""
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(64, 32))
    p0, grad = p.detach().clone(), torch.randn(64, 32)
    lr, mom, wd = 0.02, 0.9, 0.1
    ns = lambda g, steps: train_gpt.newton_schulz(g, steps, True)  # noqa: E731
    opt = train_gpt.Muon([p], lr, mom, 5, wd, ns=ns, reduce_dtype=reduce_dtype)
    p.grad = grad.clone()
    opt.step()
    update = ns(grad * (1 + mom), 5) * math.sqrt(2)
    want = p0 * (1 - lr * wd) - lr * update
    assert torch.allclose(p.detach(), want, rtol=0, atol=1e-6)
    rounded = p0 * (1 - lr * wd) - lr * update.to(torch.bfloat16).float()
    assert (p.detach() - rounded).abs().max() > 1e-6, "no bf16 rounding in one process"


def test_min_lr_floors_the_warm_down(train_gpt: ModuleType) -> None:
    env = {"ITERATIONS": "100", "WARMDOWN_ITERS": "20", "MAX_WALLCLOCK_SECONDS": "0"}
    floor = train_gpt.Hyperparameters.from_env({**env, "MIN_LR": "0.1"})
    off = train_gpt.Hyperparameters.from_env({**env, "MIN_LR": "0"})
    assert train_gpt.lr_scale(0, 0.0, floor) == 1.0
    assert train_gpt.lr_scale(90, 0.0, floor) == pytest.approx(0.5)  # above the floor: linear
    for step in (98, 99, 100, 150):
        assert train_gpt.lr_scale(step, 0.0, floor) == pytest.approx(0.1)
        assert train_gpt.lr_scale(step, 0.0, off) == pytest.approx(max(100 - step, 0) / 20)
    assert train_gpt.lr_scale(100, 0.0, off) == 0.0


# ---------------------------------------------------------------------------- compile guards


def test_qat_and_loop_toggles_do_not_recompile(train_gpt: ModuleType) -> None:
    """CompileCounter counts the frames dynamo compiles (no inductor: cheap). Turning QAT on
    must not compile again, yet must change the outputs; after both layer orders have been
    compiled (as the warm-up does), flipping the loop compiles nothing either."""
    _, model = tiny(train_gpt, QAT_ENABLED="1")
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(model, backend=counter)
    x, y = ids(), ids(seed=2)
    eager = model(x, y)
    torch._dynamo.reset()
    with torch.no_grad():
        off = compiled(x, y)
        frames = counter.frame_count
        assert frames >= 1 and torch.allclose(off, eager, atol=1e-6)
        model.set_qat(True)
        on = compiled(x, y)
        assert counter.frame_count == frames, "set_qat(True) recompiled"
        assert (on - off).abs() > 1e-6, "the fake-quant must be live in the compiled graph"
        model.looped = True
        compiled(x, y)
        both = counter.frame_count
        for looped, qat in [(False, True), (True, False), (False, False), (True, True)]:
            model.looped = looped
            model.set_qat(qat)
            compiled(x, y)
        assert counter.frame_count == both, "flipping looped/QAT after warm-up recompiled"
    torch._dynamo.reset()
