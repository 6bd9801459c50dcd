"""The tiny real GPT the technique tests build (milliseconds on one core), shared by
test_train_gpt_stack.py and test_train_gpt_ttt.py."""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor, nn

VOCAB = 64
# 4 layers, GQA (4 query heads on 2 kv heads), value embeddings on 2 and 3, XSA everywhere,
# layer 3 parallel, layers 1..2 loopable once. VOCAB_SIZE is always given: 0 means "ask the
# tokenizer", which these tests do not have.
BASE = {
    "NUM_LAYERS": "4",
    "MODEL_DIM": "32",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "MLP_MULT": "2",
    "VOCAB_SIZE": str(VOCAB),
    "TRAIN_SEQ_LEN": "16",
    "VAL_BATCH_SIZE": "256",
    "ROPE_DIMS": "4",
    "VE_DIM": "8",
    "VE_LAYERS": "2,3",
    "XSA_LAST_N": "4",
    "PARALLEL_FROM": "3",
    "LOOP_START": "1",
    "LOOP_END": "2",
    "LOOP_REPEATS": "1",
    "BOS_ID": "1",
    "FA3": "0",
    "COMPILE": "0",
}


def tiny(tg: ModuleType, noise: float = 0.1, **env: str) -> tuple[object, nn.Module]:
    """(args, model in eval mode); noise > 0 perturbs every parameter so that nothing is at
    its special initial value (zero projections, unit gains) and every path carries signal."""
    args = tg.Hyperparameters.from_env({**BASE, **env})
    torch.manual_seed(0)
    model = tg.GPT(args)
    if noise:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * noise)
    return args, model.eval()


def ids(n: int = 16, seed: int = 0, exclude: int = 1) -> Tensor:
    """(1, n) distinct token ids without the BOS id, so each token sits at one position only."""
    perm = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(seed))
    return perm[perm != exclude][:n][None]
