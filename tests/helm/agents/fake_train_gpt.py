"""A fast stand-in for train_gpt.py: prints the baseline's log lines with a score set by LR."""

import os

LR = 0.05

steps = 10
bpb = 2.0 - LR
for s in range(1, steps + 1):
    print(
        f"step:{s}/{steps} train_loss:{3.0 - s * 0.01:.4f} train_time:{s * 10}ms step_avg:10.00ms"
    )
print(
    f"step:{steps}/{steps} val_loss:{bpb * 0.7:.4f} val_bpb:{bpb:.4f} train_time:100ms step_avg:10.00ms"
)
print(f"Total submission size int8+zlib: {1_000_000 + int(os.environ.get('SEED', '0'))} bytes")
print(f"final_int8_zlib_roundtrip_exact val_loss:{bpb * 0.7:.8f} val_bpb:{bpb:.8f}")
