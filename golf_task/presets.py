"""Named configurations of train_gpt.py, as environment variables.

The script's own defaults are the full competition configuration; this module holds the
tiny CPU one that helm's demo, the tests and the CPU benchmark run on data made by
``python -m golf_task.data tiny``. It is sized so that one run (python start to final score
line, torch import included) takes about 15-25 s on one CPU core, which lets three demo
agents share a 2-core box and still finish several runs each in three minutes.
"""

from __future__ import annotations

from pathlib import Path

from golf_task.shards import DataLayout

TINY_CPU_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "DEVICE": "cpu",
    "COMPILE": "0",
    # model: the full architecture, shrunk
    "VOCAB_SIZE": "1024",
    "NUM_LAYERS": "4",
    "MODEL_DIM": "128",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "MLP_MULT": "3",
    "ROPE_DIMS": "16",
    "XSA_LAST_N": "4",
    "BIGRAM_BUCKETS": "2048",
    "BIGRAM_DIM": "64",
    # the full stack at tiny scale: layers 1-2 run twice, the last block parallel, value
    # embeddings on the last layer
    "LOOP_START": "1",
    "LOOP_END": "2",
    "LOOP_REPEATS": "1",
    "PARALLEL_FROM": "3",
    "VE_LAYERS": "3",
    "VE_DIM": "32",
    # export and evaluation: calibration and TTT chunks scaled to ~24 k validation tokens
    "GPTQ_CALIB_BATCHES": "8",
    "GPTQ_RESERVE_SECONDS": "1",
    "TTT_CHUNK_TOKENS": "4096",
    # schedule: a fixed step count, so a run's score does not depend on how busy the box is
    # (three demo agents share two cores); the wall-clock cap is only a safety net
    "TRAIN_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "1024",
    "GRAD_ACCUM_STEPS": "1",
    "ITERATIONS": "50",
    "MAX_WALLCLOCK_SECONDS": "120",
    "WARMUP_STEPS": "1",
    "WARMDOWN_ITERS": "20",
    "MUON_MOMENTUM_WARMUP_STEPS": "30",
    "VAL_LOSS_EVERY": "0",
    "TRAIN_LOG_EVERY": "10",
    "VAL_BATCH_SIZE": "8192",
    "EVAL_STRIDE": "64",
}


def tiny_env(data_dir: Path, **overrides: str | int | float) -> dict[str, str]:
    """TINY_CPU_ENV plus DATA_PATH/TOKENIZER_PATH for a dir made by the tiny data maker.

    Overrides use the env var names (``tiny_env(d, SEED=7, ITERATIONS=50)``); values are
    stringified so the result can be merged straight into a subprocess environment.
    """
    layout = DataLayout(Path(data_dir))
    env = dict(TINY_CPU_ENV)
    env["DATA_PATH"] = str(layout.dataset_dir)
    env["TOKENIZER_PATH"] = str(layout.tokenizer_model)
    env.update({k: str(v) for k, v in overrides.items()})
    return env
