"""helm's Parameter Golf script: train a small GPT in 600 s, export it under 16,000,000 bytes.

Written from the competition's public facts as a competitive starting point for agents to
evolve: a 10-layer U-Net GPT with GQA, partial RoPE, XSA, ReLU^2 MLP, BigramHash and SmearGate,
trained with Muon (matrices) and AdamW (the rest), EMA of weights and late QAT, exported with
per-row int6/int5/int8 GPTQ-lite quantization and zstd-22, then reloaded and re-evaluated.
Every technique has an environment switch so it can be ablated; see golf_task/README.md.

    torchrun --standalone --nproc_per_node=8 train_gpt.py     # 8 GPUs (NCCL, bf16, compile)
    python train_gpt.py                                        # one process, CUDA or CPU

Writes logs/<RUN_ID>.txt and logs/<RUN_ID>.ptz (the compressed model) under the cwd.
Depends only on torch, numpy, sentencepiece and zstandard.
"""

import glob
import io
import math
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

# ============================================================================================
# Configuration: every field is read from the environment variable of the same name upper-cased
# ============================================================================================


@dataclass
class Hyperparameters:
    """Defaults are the full competition configuration (8xH100, 600 s)."""

    # data and run
    data_path: str = "./data/datasets/fineweb10B_sp1024"
    tokenizer_path: str = "./data/tokenizers/fineweb_1024_bpe.model"
    run_id: str = ""  # empty: a fresh uuid
    seed: int = 1337
    log_dir: str = "logs"
    device: str = ""  # empty: cuda if available, else cpu
    compile: bool = True
    # schedule
    iterations: int = 20000
    max_wallclock_seconds: float = 600.0  # <= 0: no cap
    train_batch_tokens: int = 786432
    train_seq_len: int = 2048
    grad_accum_steps: int = 0  # 0: 8 // world_size (as the baseline), else as given
    warmup_steps: int = 20  # compile warm-up steps, undone afterwards, not counted as training
    lr_warmup_steps: int = 0  # linear learning-rate warm-up
    warmdown_iters: int = 3500  # linear decay to 0 over the last N steps (or their time)
    val_batch_size: int = 524288  # tokens per evaluation batch, all ranks together
    val_loss_every: int = 4000  # 0: only at the end
    train_log_every: int = 200
    # model
    vocab_size: int = 1024
    num_layers: int = 10  # 11 with int5 MLP and 10240 buckets risks the 16 MB cap (README)
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 3.0
    tie_embeddings: bool = True
    tied_embed_init_std: float = 0.005
    rope_base: float = 10000.0
    rope_dims: int = 16  # rotary dims per head; 0 or head_dim: full RoPE
    logit_softcap: float = 30.0  # <= 0: off
    qk_gain_init: float = 1.5
    unet_skips: bool = True
    xsa_last_n: int = 4  # exclusive self-attention on the last N layers; 0: off
    bigram_buckets: int = 10240  # 0: no BigramHash table
    bigram_dim: int = 128
    smear_gate: bool = True
    # optimizers
    matrix_lr: float = 0.025
    embed_lr: float = 0.035
    head_lr: float = 0.008  # only for an untied output head
    scalar_lr: float = 0.025
    muon_momentum: float = 0.99
    muon_momentum_warmup_start: float = 0.92
    muon_momentum_warmup_steps: int = 1500
    muon_backend_steps: int = 5
    muon_wd: float = 0.04
    adam_wd: float = 0.04
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.3  # 0: off
    # weight averaging and quantization-aware training
    ema_enabled: bool = True
    ema_decay: float = 0.997
    qat_enabled: bool = True
    qat_onset_lr_scale: float = 0.15  # fake-quantize weights once the lr multiplier drops below
    # export
    quant_attn_bits: int = 6
    quant_mlp_bits: int = 5
    quant_embed_bits: int = 8  # token embedding (= tied output head) and an untied head
    quant_bigram_bits: int = 6  # BigramHash table and projection
    gptq_lite: bool = True
    gptq_percentiles: str = "1.0,0.9995,0.999,0.995,0.99"  # per-row clip candidates
    zstd_level: int = 22
    # evaluation
    eval_seq_len: int = 0  # 0: train_seq_len
    eval_stride: int = 64  # sliding-window stride for the final extra score; 0: off
    prequant_eval: bool = True  # score the averaged float weights before export
    save_raw_model: bool = False  # also write the float weights to logs/<RUN_ID>.pt

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Hyperparameters":
        env = dict(os.environ if env is None else env)
        values = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            kind = type(f.default)
            if kind is bool:
                low = raw.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off", ""}:
                    raise ValueError(f"{f.name.upper()}={raw!r} is not a boolean")
                values[f.name] = low in {"1", "true", "yes", "on"}
            else:
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    if kind is not int:
                        raise
                    values[f.name] = int(float(raw))  # e.g. ITERATIONS=2e4
        args = cls(**values)
        if not args.run_id:
            args.run_id = str(uuid.uuid4())
        return args

    def percentiles(self) -> list[float]:
        """Clip candidates; 1.0 (plain max-abs) is always included so GPTQ-lite never loses."""
        if not self.gptq_lite:
            return [1.0]
        ps = sorted({float(p) for p in self.gptq_percentiles.split(",") if p.strip()} | {1.0})
        return ps[::-1]


# ============================================================================================
# Data: shard reader (mirror of golf_task/data.py) and the training stream
# ============================================================================================

SHARD_MAGIC, SHARD_VERSION, HEADER_INTS = 20240520, 1, 256


def read_shard(path: str | Path) -> np.ndarray:
    """Read one token shard, refusing anything whose header or size is off."""
    path = Path(path)
    size, header_bytes = path.stat().st_size, HEADER_INTS * 4
    if size < header_bytes:
        raise ValueError(f"{path}: truncated shard: {size} bytes, header alone is {header_bytes}")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != SHARD_MAGIC:
        raise ValueError(f"{path}: bad magic {int(header[0])}, expected {SHARD_MAGIC}")
    if int(header[1]) != SHARD_VERSION:
        raise ValueError(f"{path}: unsupported shard version {int(header[1])}")
    n = int(header[2])
    if n < 0 or size != header_bytes + 2 * n:
        what = "truncated" if size < header_bytes + 2 * n else "oversized"
        raise ValueError(f"{path}: {what} shard: header says {n} tokens, file has {size} bytes")
    return np.fromfile(path, dtype="<u2", count=n, offset=header_bytes)


class TokenStream:
    """Endless stream over the training shards in order, wrapping around at the end."""

    def __init__(self, pattern: str):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"no training shards match {pattern}")
        self.reset()

    def reset(self) -> None:
        self.file_idx, self.pos = 0, 0
        self.tokens = read_shard(self.files[0])

    def take(self, n: int) -> np.ndarray:
        out, need = [], n
        while need > 0:
            if self.pos >= self.tokens.size:
                self.file_idx = (self.file_idx + 1) % len(self.files)
                self.tokens, self.pos = read_shard(self.files[self.file_idx]), 0
            chunk = self.tokens[self.pos : self.pos + need]
            out.append(chunk)
            self.pos += chunk.size
            need -= chunk.size
        return np.concatenate(out)


class DistributedTokenLoader:
    """Each step takes one contiguous span per rank from a shared stream (same on all ranks)."""

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device):
        self.stream, self.rank, self.world_size, self.device = (
            TokenStream(pattern),
            rank,
            world_size,
            device,
        )

    def next_batch(self, local_tokens: int, seq_len: int) -> tuple[Tensor, Tensor]:
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)[self.rank * span : (self.rank + 1) * span]
        t = torch.from_numpy(chunk.astype(np.int64))
        x, y = t[:-1].view(-1, seq_len), t[1:].view(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def load_val_tokens(pattern: str) -> Tensor:
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no validation shards match {pattern}")
    return torch.from_numpy(np.concatenate([read_shard(f) for f in files]).astype(np.int64))


# ============================================================================================
# Tokenizer-agnostic bits per byte
# ============================================================================================


def build_byte_luts(sp, vocab_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token byte counts as the competition defines them.

    Returns (base_bytes, has_leading_space, is_boundary): a piece's bytes are the UTF-8 length
    of its text without the leading U+2581, byte-fallback pieces count 1, control/unknown/
    unused pieces count 0 and are boundaries. The leading space costs one byte unless the
    previous token is a boundary (so a document's first word, after BOS, adds no space).
    Ids the tokenizer does not have (model vocab larger than the tokenizer's) act as boundaries.
    """
    base = torch.zeros(vocab_size, dtype=torch.int64)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    boundary = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(min(sp.vocab_size(), vocab_size)):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, space, boundary


def target_bytes(prev_ids: Tensor, tgt_ids: Tensor, luts: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Bytes of each target token given the token before it (same shapes in and out)."""
    base, space, boundary = (t.to(tgt_ids.device) for t in luts)
    return base[tgt_ids] + (space[tgt_ids] & ~boundary[prev_ids]).to(torch.int64)


# ============================================================================================
# Model
# ============================================================================================


def fake_quantize_rows(w: Tensor, bits: int) -> Tensor:
    """Per-row symmetric max-abs quantize-dequantize, as the export will do (cheap variant)."""
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / qmax
    return (w / scale).round().clamp(-qmax, qmax) * scale


class CastedLinear(nn.Linear):
    """Linear without bias whose weight can be fake-quantized during training (QAT).

    The on/off switch is a buffer, not a Python flag, so turning QAT on mid-run does not make
    torch.compile recompile; the straight-through estimator passes gradients unchanged.
    """

    def __init__(
        self, in_features: int, out_features: int, qat_bits: int = 0, zero_init: bool = False
    ):
        super().__init__(in_features, out_features, bias=False)
        self.qat_bits = qat_bits
        self.register_buffer("qat_on", torch.zeros(()), persistent=False)
        self.qat_active = False
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        # Compiled graphs always carry the fake-quant (gated by the buffer); eager mode skips
        # it while QAT is off, which is most of a run.
        if self.qat_bits and (self.qat_active or torch.compiler.is_compiling()):
            w = w + self.qat_on * (fake_quantize_rows(w.detach(), self.qat_bits) - w.detach())
        return F.linear(x, w.to(x.dtype))


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, dims: int) -> Tensor:
    """Rotate the first ``dims`` channels of each head (partial RoPE); the rest pass through."""
    rot, rest = x[..., :dims], x[..., dims:]
    a, b = rot.chunk(2, dim=-1)
    rot = torch.cat((a * cos + b * sin, b * cos - a * sin), dim=-1)
    return torch.cat((rot, rest), dim=-1) if rest.size(-1) else rot


class Attention(nn.Module):
    def __init__(self, args: Hyperparameters, xsa: bool):
        super().__init__()
        dim, self.heads, self.kv_heads = args.model_dim, args.num_heads, args.num_kv_heads
        if dim % self.heads or self.heads % self.kv_heads:
            raise ValueError("model_dim must divide by num_heads, num_heads by num_kv_heads")
        self.head_dim = dim // self.heads
        self.rope_dims = args.rope_dims if 0 < args.rope_dims < self.head_dim else self.head_dim
        if self.rope_dims % 2:
            raise ValueError("rope_dims must be even")
        bits = args.quant_attn_bits if args.qat_enabled else 0
        kv_dim = self.kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim, bits)
        self.c_k = CastedLinear(dim, kv_dim, bits)
        self.c_v = CastedLinear(dim, kv_dim, bits)
        self.proj = CastedLinear(dim, dim, bits, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((self.heads,), args.qk_gain_init))
        inv_freq = 1.0 / args.rope_base ** (
            torch.arange(0, self.rope_dims, 2).float() / self.rope_dims
        )
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.xsa = xsa

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        freqs = torch.outer(torch.arange(T, device=x.device, dtype=torch.float32), self.inv_freq)
        cos, sin = freqs.cos().to(q.dtype), freqs.sin().to(q.dtype)
        q = apply_rotary(rms_norm(q), cos, sin, self.rope_dims)
        k = apply_rotary(rms_norm(k), cos, sin, self.rope_dims)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        gqa = self.kv_heads != self.heads
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        if self.xsa:
            # Exclusive self-attention: drop the part of the output that points along the
            # token's own value, so attention carries only information from other tokens.
            vh = v.repeat_interleave(self.heads // self.kv_heads, dim=1) if gqa else v
            vn = F.normalize(vh, dim=-1)
            y = y - (y * vn).sum(dim=-1, keepdim=True) * vn
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, args: Hyperparameters):
        super().__init__()
        hidden = int(round(args.mlp_mult * args.model_dim))
        bits = args.quant_mlp_bits if args.qat_enabled else 0
        self.fc = CastedLinear(args.model_dim, hidden, bits)
        self.proj = CastedLinear(hidden, args.model_dim, bits, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, args: Hyperparameters, xsa: bool):
        super().__init__()
        dim = args.model_dim
        self.attn, self.mlp = Attention(args, xsa), MLP(args)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        # Learned mix of the running stream with the block-0 input (x0), per channel.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class BigramHash(nn.Module):
    """Embedding of the (previous, current) token pair, hashed into a fixed number of buckets.

    Gives the first layer the bigram statistics for free; the bucket count trades artifact
    bytes for fewer collisions. Position 0 (no previous token) uses bucket 0.
    """

    def __init__(self, args: Hyperparameters):
        super().__init__()
        self.buckets = args.bigram_buckets
        self.table = nn.Embedding(args.bigram_buckets, args.bigram_dim)
        nn.init.normal_(self.table.weight, std=0.02)
        bits = args.quant_bigram_bits if args.qat_enabled else 0
        self.proj = CastedLinear(args.bigram_dim, args.model_dim, bits, zero_init=True)

    def forward(self, ids: Tensor) -> Tensor:
        prev = F.pad(ids[:, :-1], (1, 0))
        h = ((prev * 1000003) ^ (ids * 7919)) % (self.buckets - 1) + 1
        h[:, 0] = 0
        return self.proj(self.table(h))


class GPT(nn.Module):
    def __init__(self, args: Hyperparameters):
        super().__init__()
        self.args = args
        dim, L = args.model_dim, args.num_layers
        self.tok_emb = nn.Embedding(args.vocab_size, dim)
        nn.init.normal_(
            self.tok_emb.weight, std=args.tied_embed_init_std if args.tie_embeddings else 1.0
        )
        self.bigram = BigramHash(args) if args.bigram_buckets > 1 else None
        self.smear = nn.Parameter(torch.full((dim,), -3.0)) if args.smear_gate else None
        self.n_enc = L // 2 if args.unet_skips else 0
        self.n_skip = min(self.n_enc, L - self.n_enc)
        self.skip_weights = nn.Parameter(torch.ones(self.n_skip, dim)) if self.n_skip else None
        self.blocks = nn.ModuleList(Block(args, xsa=i >= L - args.xsa_last_n) for i in range(L))
        self.lm_head = None
        if not args.tie_embeddings:
            self.lm_head = CastedLinear(dim, args.vocab_size, zero_init=True)

    def hidden(self, ids: Tensor) -> Tensor:
        x = self.tok_emb(ids)
        if self.bigram is not None:
            x = x + self.bigram(ids)
        x = rms_norm(x)
        if self.smear is not None:
            # SmearGate: blend in the previous position's embedding through a learned gate.
            gate = torch.sigmoid(self.smear).to(x.dtype)
            x = x + gate * (F.pad(x[:, :-1], (0, 0, 1, 0)) - x)
        x0, skips = x, []
        for i, block in enumerate(self.blocks):
            if i < self.n_enc:
                x = block(x, x0)
                skips.append(x)
                continue
            j = i - self.n_enc
            if j < self.n_skip:
                x = x + self.skip_weights[j].to(x.dtype) * skips.pop()
            x = block(x, x0)
        return rms_norm(x)

    def logits(self, ids: Tensor) -> Tensor:
        h = self.hidden(ids)
        w = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(h, w.to(h.dtype)).float()
        cap = self.args.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def forward(self, ids: Tensor, targets: Tensor) -> Tensor:
        logits = self.logits(ids)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def set_qat(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, CastedLinear):
                m.qat_on.fill_(1.0 if on else 0.0)
                m.qat_active = on


# ============================================================================================
# Optimizers
# ============================================================================================


def newton_schulz(G: Tensor, steps: int) -> Tensor:
    """Approximately orthogonalize G (the quintic Newton-Schulz iteration Muon uses)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(torch.bfloat16 if G.is_cuda else torch.float32)
    X = X / (X.norm() + 1e-7)
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalized updates for 2-D weights, with decoupled weight decay.

    Ranks split the Newton-Schulz work by parameter index and share the results with one
    all-reduce, so the optimizer costs ~1/world_size of its single-process time.
    """

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, weight_decay: float):
        super().__init__(
            params,
            dict(lr=lr, momentum=momentum, backend_steps=backend_steps, weight_decay=weight_decay),
        )

    @torch.no_grad()
    def step(self, closure=None):
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            total = sum(p.numel() for p in params)
            flat = torch.zeros(total, device=params[0].device, dtype=torch.float32)
            offset = 0
            for i, p in enumerate(params):
                if i % world == rank and p.grad is not None:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(p.grad)
                    g = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                    g = newton_schulz(g, group["backend_steps"]).float()
                    g *= max(1.0, g.size(0) / g.size(1)) ** 0.5
                    flat[offset : offset + p.numel()] = g.flatten()
                offset += p.numel()
            if world > 1:
                dist.all_reduce(flat)
            offset = 0
            for p in params:
                if group["weight_decay"]:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()


def build_optimizers(model: GPT, args: Hyperparameters, fused: bool) -> list[torch.optim.Optimizer]:
    """Muon for the hidden matrices; AdamW for embeddings, the head, and scalars/gains."""
    matrices, scalars, embeds, head = [], [], [], []
    for name, p in model.named_parameters():
        if name in ("tok_emb.weight", "bigram.table.weight"):
            embeds.append(p)
        elif name == "lm_head.weight":
            head.append(p)
        elif (
            p.ndim == 2
            and (name.startswith("blocks.") or name == "bigram.proj.weight")
            and "resid_mix" not in name
        ):
            matrices.append(p)
        else:
            scalars.append(p)
    groups = [dict(params=embeds, lr=args.embed_lr, base_lr=args.embed_lr)]
    if head:
        groups.append(dict(params=head, lr=args.head_lr, base_lr=args.head_lr))
    groups.append(dict(params=scalars, lr=args.scalar_lr, base_lr=args.scalar_lr))
    adam = torch.optim.AdamW(
        groups,
        betas=(args.beta1, args.beta2),
        eps=args.adam_eps,
        weight_decay=args.adam_wd,
        fused=fused,
    )
    muon = Muon(matrices, args.matrix_lr, args.muon_momentum, args.muon_backend_steps, args.muon_wd)
    for g in muon.param_groups:
        g["base_lr"] = args.matrix_lr
    return [adam, muon]


# ============================================================================================
# Quantized export
# ============================================================================================

EXPORT_FORMAT = "helm-golf-quant-v1"


def quant_bits_for(name: str, tensor: Tensor, args: Hyperparameters) -> int:
    """Bit width for one state-dict entry; 0 means keep it as float16 (small or 1-D)."""
    if tensor.ndim != 2 or not tensor.is_floating_point():
        return 0
    if ".attn." in name and "q_gain" not in name:
        return args.quant_attn_bits
    if ".mlp." in name:
        return args.quant_mlp_bits
    if name in ("tok_emb.weight", "lm_head.weight"):
        return args.quant_embed_bits
    if name.startswith("bigram."):
        return args.quant_bigram_bits
    return 0


def quantize_rows(w: Tensor, bits: int, percentiles: list[float]) -> tuple[Tensor, Tensor]:
    """Per-row symmetric quantization; GPTQ-lite picks, per row, the clip with least error.

    For each candidate percentile p the row is clipped at the p-quantile of |w| (p=1: max-abs),
    quantized with that scale (rounded to float16, as stored), and its squared reconstruction
    error measured; each row keeps its best candidate. Returns (int8 codes, float16 scales).
    """
    if not 2 <= bits <= 8:
        raise ValueError(f"bit width {bits} not in 2..8")
    w = w.detach().float()
    qmax = 2 ** (bits - 1) - 1
    absw = w.abs()
    sorted_abs = absw.sort(dim=1).values if any(p < 1.0 for p in percentiles) else None
    n = w.size(1)
    best_err = torch.full((w.size(0),), float("inf"), device=w.device)
    best_q = torch.zeros_like(w, dtype=torch.int8)
    best_s = torch.ones(w.size(0), dtype=torch.float16, device=w.device)
    for p in percentiles:
        if p >= 1.0 or sorted_abs is None:
            clip = absw.amax(dim=1)
        else:
            pos = p * (n - 1)
            lo, frac = int(math.floor(pos)), pos - math.floor(pos)
            hi = min(lo + 1, n - 1)
            clip = sorted_abs[:, lo] * (1 - frac) + sorted_abs[:, hi] * frac
        scale = (clip / qmax).to(torch.float16)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        s = scale.float()[:, None]
        q = (w / s).round().clamp(-qmax, qmax)
        err = (q * s - w).square().sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_q[better] = q[better].to(torch.int8)
        best_s = torch.where(better, scale, best_s)
    return best_q, best_s


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    return q.float() * scale.float()[:, None]


def quantize_state(state: dict[str, Tensor], args: Hyperparameters) -> dict:
    """The object that gets serialized: int8 codes + fp16 row scales, fp16 for the rest."""
    percentiles = args.percentiles()
    out: dict = {"format": EXPORT_FORMAT, "tensors": {}}
    for name, t in state.items():
        bits = quant_bits_for(name, t, args)
        if bits:
            q, s = quantize_rows(t, bits, percentiles)
            out["tensors"][name] = {"q": q.cpu(), "s": s.cpu(), "bits": bits}
        else:
            keep = t.detach().cpu()
            out["tensors"][name] = {"f": keep.half() if keep.is_floating_point() else keep}
    return out


def dequantize_state(obj: dict) -> dict[str, Tensor]:
    if obj.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not a {EXPORT_FORMAT} export")
    state = {}
    for name, e in obj["tensors"].items():
        state[name] = dequantize_rows(e["q"], e["s"]) if "q" in e else e["f"].float()
    return state


def serialize(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def zstd_compress(raw: bytes, level: int) -> bytes:
    """zstd with one worker per core: level 22 on ~25 MB of codes takes minutes single-threaded.

    Multi-worker output is deterministic for any worker count and decompresses as usual.
    """
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=-1).compress(raw)


def zstd_decompress(blob: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(blob)


def export_model(state: dict[str, Tensor], args: Hyperparameters) -> tuple[bytes, int]:
    """Quantize, serialize and compress a state dict: (compressed blob, raw payload bytes)."""
    raw = serialize(quantize_state(state, args))
    return zstd_compress(raw, args.zstd_level), len(raw)


def load_export(blob: bytes) -> dict[str, Tensor]:
    obj = torch.load(io.BytesIO(zstd_decompress(blob)), map_location="cpu", weights_only=True)
    return dequantize_state(obj)


def quant_label(args: Hyperparameters) -> str:
    """The size-line label, e.g. int6_int5+zstd; the score line uses it with '+' as '_'."""
    bits = [args.quant_attn_bits, args.quant_mlp_bits]
    tag = f"int{bits[0]}" if bits[0] == bits[1] else f"int{bits[0]}_int{bits[1]}"
    return f"{tag}+zstd"


# ============================================================================================
# Evaluation
# ============================================================================================


def eval_windows(n_targets: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, length, first scored position) windows that score every target exactly once.

    stride <= 0: consecutive chunks of seq_len (the last may be shorter). Otherwise windows of
    seq_len advance by stride and each scores only targets its predecessors did not, so all but
    the first target see at least seq_len - stride tokens of context.
    """
    if n_targets <= 0:
        return []
    stride = min(stride, seq_len)  # a longer stride would leave targets unscored
    if stride <= 0 or n_targets <= seq_len:
        return [(s, min(seq_len, n_targets - s), 0) for s in range(0, n_targets, seq_len)]
    starts = list(range(0, n_targets - seq_len + 1, stride))
    if starts[-1] != n_targets - seq_len:
        starts.append(n_targets - seq_len)
    out, scored_to = [], 0
    for s in starts:
        out.append((s, seq_len, scored_to - s if scored_to > s else 0))
        scored_to = s + seq_len
    return out


@torch.no_grad()
def evaluate(
    logits_fn,
    tokens: Tensor,
    luts,
    args: Hyperparameters,
    rank: int,
    world: int,
    device: torch.device,
    stride: int = 0,
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and bits per byte over the whole validation split."""
    seq_len = args.eval_seq_len or args.train_seq_len
    windows = eval_windows(tokens.numel() - 1, seq_len, stride)
    mine = windows[rank * len(windows) // world : (rank + 1) * len(windows) // world]
    per_batch = max(1, args.val_batch_size // (world * seq_len))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_tok = torch.zeros((), dtype=torch.float64, device=device)
    n_bytes = torch.zeros((), dtype=torch.float64, device=device)
    i = 0
    while i < len(mine):
        length = mine[i][1]
        batch = []
        while i < len(mine) and len(batch) < per_batch and mine[i][1] == length:
            batch.append(mine[i])
            i += 1
        idx = torch.tensor([s for s, _, _ in batch])[:, None] + torch.arange(length + 1)[None, :]
        seqs = tokens[idx].to(device)
        x, y = seqs[:, :-1], seqs[:, 1:]
        with autocast(device):
            logits = logits_fn(x)
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none"
        )
        first = torch.tensor([f for _, _, f in batch], device=device)[:, None]
        mask = (torch.arange(length, device=device)[None, :] >= first).flatten()
        nb = target_bytes(x, y, luts).flatten()
        loss_sum += nll.double()[mask].sum()
        n_tok += mask.sum()
        n_bytes += nb[mask].sum()
    if world > 1:
        for t in (loss_sum, n_tok, n_bytes):
            dist.all_reduce(t)
    loss = (loss_sum / n_tok).item()
    bpb = loss / math.log(2) * (n_tok / n_bytes).item()
    return loss, bpb


# ============================================================================================
# Run
# ============================================================================================


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


class RunLog:
    """Rank 0 prints each line and appends it to logs/<RUN_ID>.txt; other ranks stay quiet."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def __call__(self, msg: str, console: bool = True) -> None:
        if self.path is None:
            return
        if console:
            print(msg, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(msg + "\n")


def lr_scale(step: int, elapsed_ms: float, args: Hyperparameters) -> float:
    """Warm-up, then flat, then a linear warm-down over the last WARMDOWN_ITERS steps.

    Under a wall-clock cap the warm-down also starts when the remaining time would only fit
    WARMDOWN_ITERS more steps at the average step time so far; whichever comes first wins.
    """
    scale = min(1.0, (step + 1) / args.lr_warmup_steps) if args.lr_warmup_steps > 0 else 1.0
    if args.warmdown_iters <= 0:
        return scale
    by_iter = min(1.0, max(args.iterations - step, 0) / args.warmdown_iters)
    by_time = 1.0
    if args.max_wallclock_seconds > 0 and step > 0:
        warmdown_ms = args.warmdown_iters * elapsed_ms / step
        remaining_ms = max(1000 * args.max_wallclock_seconds - elapsed_ms, 0.0)
        by_time = min(1.0, remaining_ms / max(warmdown_ms, 1e-9))
    return scale * min(by_iter, by_time)


def system_banner(device: torch.device) -> list[str]:
    lines = [f"Running Python {sys.version}", f"Running PyTorch {torch.__version__}"]
    if device.type == "cuda":
        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError) as err:
            smi = f"nvidia-smi: unavailable ({err})"
        lines.append(smi.rstrip())
    else:
        lines.append(f"nvidia-smi: skipped (cpu: {platform.processor() or platform.machine()})")
    return lines


def peak_memory_mib(device: torch.device) -> tuple[int, int]:
    """CUDA allocator peaks on GPU; on CPU the process's peak resident set for both."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() // 2**20, torch.cuda.max_memory_reserved() // 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return rss, rss


def main() -> None:
    args = Hyperparameters.from_env()
    code = Path(__file__).read_text(encoding="utf-8")
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if distributed:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None
        )
    master = rank == 0
    accum = args.grad_accum_steps or (8 // world if 8 % world == 0 else 1)
    local_tokens = args.train_batch_tokens // (world * accum)
    if local_tokens <= 0 or local_tokens % args.train_seq_len:
        raise ValueError(
            f"TRAIN_BATCH_TOKENS={args.train_batch_tokens} must split into whole sequences of "
            f"TRAIN_SEQ_LEN={args.train_seq_len} over world_size*grad_accum={world * accum}"
        )

    log_path = Path(args.log_dir) / f"{args.run_id}.txt"
    log = RunLog(log_path if master else None)
    if master:
        print(log_path, flush=True)
    log(code, console=False)
    log("=" * 100, console=False)
    for line in system_banner(device):
        log(line, console=False)
    log("=" * 100, console=False)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer_path)
    if sp.vocab_size() > args.vocab_size:
        raise ValueError(f"tokenizer has {sp.vocab_size()} pieces but VOCAB_SIZE={args.vocab_size}")
    luts = build_byte_luts(sp, args.vocab_size)
    train_pattern = os.path.join(args.data_path, "fineweb_train_*.bin")
    val_pattern = os.path.join(args.data_path, "fineweb_val_*.bin")
    val_tokens = load_val_tokens(val_pattern)
    loader = DistributedTokenLoader(train_pattern, rank, world, device)
    log(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={args.tokenizer_path}")
    log(f"train_loader:dataset:{Path(args.data_path).name} train_shards:{len(loader.stream.files)}")
    log(f"val_loader:shards pattern={val_pattern} tokens:{val_tokens.numel()}")
    log("Hyperparameters:")
    for f in fields(args):
        log(f"  {f.name}: {getattr(args, f.name)}")

    model = GPT(args).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    use_compile = args.compile
    train_model = torch.compile(model, dynamic=False) if use_compile else model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(
            train_model, device_ids=[local_rank] if use_cuda else None, broadcast_buffers=False
        )
    optimizers = build_optimizers(model, args, fused=use_cuda)
    log(f"model_params:{n_params}")
    log(f"world_size:{world} grad_accum_steps:{accum}")
    log(f"attention_mode:gqa num_heads:{args.num_heads} num_kv_heads:{args.num_kv_heads}")
    head_lr = 0.0 if args.tie_embeddings else args.head_lr
    log(
        f"tie_embeddings:{args.tie_embeddings} embed_lr:{args.embed_lr} head_lr:{head_lr} "
        f"matrix_lr:{args.matrix_lr} scalar_lr:{args.scalar_lr}"
    )
    log(
        f"train_batch_tokens:{args.train_batch_tokens} train_seq_len:{args.train_seq_len} "
        f"iterations:{args.iterations} warmup_steps:{args.warmup_steps} "
        f"max_wallclock_seconds:{max(args.max_wallclock_seconds, 0.0):.3f}"
    )
    log(f"seed:{args.seed}")

    def sync() -> None:
        if use_cuda:
            torch.cuda.synchronize()

    def train_step(step: int, scale: float) -> Tensor:
        total = torch.zeros((), device=device)
        for micro in range(accum):
            x, y = loader.next_batch(local_tokens, args.train_seq_len)
            if distributed:
                train_model.require_backward_grad_sync = micro == accum - 1
            with autocast(device):
                loss = train_model(x, y)
            (loss / accum).backward()
            total += loss.detach()
        frac = (
            min(step / args.muon_momentum_warmup_steps, 1.0)
            if args.muon_momentum_warmup_steps > 0
            else 1.0
        )
        momentum = (1 - frac) * args.muon_momentum_warmup_start + frac * args.muon_momentum
        for opt in optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale
                if isinstance(opt, Muon):
                    g["momentum"] = momentum
        if args.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return total / accum

    # Compile warm-up: run real steps so kernels are compiled, then undo them entirely.
    if args.warmup_steps > 0:
        saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved_opts = [copy_state(opt.state_dict()) for opt in optimizers]
        for i in range(args.warmup_steps):
            train_step(0, 1.0)
            log(f"warmup_step:{i + 1}/{args.warmup_steps}")
        model.load_state_dict(saved_model)
        for opt, st in zip(optimizers, saved_opts, strict=True):
            opt.load_state_dict(st)
        model.zero_grad(set_to_none=True)
        loader.stream.reset()

    ema = None
    if args.ema_enabled:
        ema = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    eval_fn = model.logits
    if use_compile:
        eval_fn = torch.compile(model.logits, dynamic=False)
    max_ms = 1000.0 * args.max_wallclock_seconds if args.max_wallclock_seconds > 0 else None
    train_ms, stop_after, qat_on = 0.0, None, False
    sync()
    t0 = time.perf_counter()
    step = 0
    while True:
        last = step == args.iterations or (stop_after is not None and step >= stop_after)
        if last or (args.val_loss_every > 0 and step % args.val_loss_every == 0):
            sync()
            train_ms += 1000 * (time.perf_counter() - t0)
            model.eval()
            loss, bpb = evaluate(eval_fn, val_tokens, luts, args, rank, world, device)
            model.train()
            log(
                f"step:{step}/{args.iterations} val_loss:{loss:.4f} val_bpb:{bpb:.4f} "
                f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms"
            )
            sync()
            t0 = time.perf_counter()
        if last:
            if stop_after is not None and step < args.iterations:
                log(
                    f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{args.iterations}"
                )
            break
        elapsed = train_ms + 1000 * (time.perf_counter() - t0)
        scale = lr_scale(step, elapsed, args)
        if args.qat_enabled and not qat_on and scale < args.qat_onset_lr_scale:
            model.set_qat(True)
            qat_on = True
            log(f"qat:enabled step:{step} lr_scale:{scale:.4f}")
        train_loss = train_step(step, scale)
        if ema is not None:
            d = min(args.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for n, p in model.named_parameters():
                    ema[n].lerp_(p.detach().float(), 1 - d)
        step += 1
        sync()
        approx_ms = train_ms + 1000 * (time.perf_counter() - t0)
        if args.train_log_every > 0 and (
            step <= 10 or step % args.train_log_every == 0 or stop_after is not None
        ):
            if distributed:
                dist.all_reduce(train_loss)  # gloo has no AVG
                train_loss /= world
            log(
                f"step:{step}/{args.iterations} train_loss:{train_loss.item():.4f} "
                f"train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms"
            )
        capped = torch.tensor(int(max_ms is not None and approx_ms >= max_ms), device=device)
        if distributed:
            dist.all_reduce(capped, op=dist.ReduceOp.MAX)
        if stop_after is None and bool(capped.item()):
            stop_after = step

    alloc, reserved = peak_memory_mib(device)
    log(f"peak memory allocated: {alloc} MiB reserved: {reserved} MiB")
    model.set_qat(False)
    if ema is not None:
        log("ema:applying EMA weights")
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(ema[n].to(p.dtype))
        if args.prequant_eval:
            t = time.perf_counter()
            model.eval()
            loss, bpb = evaluate(eval_fn, val_tokens, luts, args, rank, world, device)
            log(
                f"pre-quantization post-ema val_loss:{loss:.8f} val_bpb:{bpb:.8f} "
                f"eval_time:{1000 * (time.perf_counter() - t):.0f}ms"
            )

    # Export on rank 0, which writes the file that every rank then reloads and scores.
    label = quant_label(args)
    score_label = label.replace("+", "_")
    ptz_path = Path(args.log_dir) / f"{args.run_id}.ptz"
    code_bytes = len(code.encode("utf-8"))
    if master:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        blob, _raw_bytes = export_model(state, args)
        ptz_path.write_bytes(blob)
        if args.save_raw_model:
            torch.save(state, ptz_path.with_suffix(".pt"))
        log(f"Serialized model: {len(serialize(state))} bytes")
        log(f"Code size: {code_bytes} bytes")
        log(f"Serialized model {label}: {len(blob)} bytes")
        log(f"Total submission size {label}: {len(blob) + code_bytes} bytes")
    if distributed:
        dist.barrier()

    reloaded = GPT(args).to(device)
    reloaded.load_state_dict(load_export(ptz_path.read_bytes()), strict=True)
    reloaded.eval()
    rt_fn = torch.compile(reloaded.logits, dynamic=False) if use_compile else reloaded.logits
    t = time.perf_counter()
    loss, bpb = evaluate(rt_fn, val_tokens, luts, args, rank, world, device)
    log(
        f"final_{score_label}_roundtrip val_loss:{loss:.4f} val_bpb:{bpb:.4f} "
        f"eval_time:{1000 * (time.perf_counter() - t):.0f}ms"
    )
    log(f"final_{score_label}_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
    if args.eval_stride > 0:
        t = time.perf_counter()
        loss, bpb = evaluate(
            rt_fn, val_tokens, luts, args, rank, world, device, stride=args.eval_stride
        )
        log(
            f"final_{score_label}_sliding_window val_loss:{loss:.4f} val_bpb:{bpb:.4f} "
            f"stride:{args.eval_stride} eval_time:{1000 * (time.perf_counter() - t):.0f}ms"
        )
        log(f"final_{score_label}_sliding_window_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


def copy_state(state: dict) -> dict:
    """Deep copy of an optimizer state dict (tensors cloned), to undo compile warm-up steps."""
    if isinstance(state, dict):
        return {k: copy_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [copy_state(v) for v in state]
    return state.clone() if isinstance(state, Tensor) else state


if __name__ == "__main__":
    main()
