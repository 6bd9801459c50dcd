"""The competition's fixed numbers, defined once: every check and every display imports them.

An artifact is the code bytes plus the compressed model bytes; a record must fit under the
cap in decimal bytes (16 MB = 16,000,000, not MiB), train within 10 minutes and evaluate
within another 10 on 8xH100.
"""

ARTIFACT_CAP_BYTES = 16_000_000
TRAIN_CAP_MS = 600_000
EVAL_CAP_MS = 600_000
# The wallclock cap is checked between steps, so an honest run stops a step past 600 s
# (the records show up to +128 ms); anything beyond a second is a longer run.
TIME_GRACE_MS = 1_000
MIN_IMPROVEMENT_NATS = 0.005
SIGNIFICANCE_ALPHA = 0.01
