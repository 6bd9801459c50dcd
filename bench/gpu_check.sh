#!/usr/bin/env bash
# bench/gpu_check.sh: one prepared check of golf_task/train_gpt.py on one H100/H200 (issue 14).
#
# It runs the full default configuration under torchrun with one process and
# GRAD_ACCUM_STEPS=8, i.e. the per-step work of the 8-GPU run on one GPU, for a few hundred
# steps at most, on the tiny sp8192 data it builds there (no internet needed), then exports,
# reloads and scores as a real run does, and prints one summary block: ms/step, tokens/s, peak
# memory, compile time, eval times, artifact bytes and the score lines. The whole script
# stops by itself within GPU_CHECK_BUDGET_S (default 420 s), so it fits a machine lent for 8
# minutes with time to spare for the machine's start and the copy back.
#
#   bench/gpu_check.sh                 # the check; files under $OUT if set, else bench/out/
#   bench/gpu_check.sh --dry-run       # print the exact commands and environment, run nothing
#   bench/gpu_check.sh --fetch-wheels  # HERE, with PyPI: save the wheels the GPU box lacks in
#                                      # .whl/ (git-ignored); pass carry [".whl"] to the run
#
# From a session with the device tool:
#   bench/gpu_check.sh --fetch-wheels        (once, on the development box)
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=480)
#
# Python: the first of $PYTHON, .venv/bin/python, python3, python whose torch sees CUDA. If
# that interpreter lacks numpy, sentencepiece or zstandard (the 'cuda' image lacks zstandard),
# they are installed into $GPU_CHECK_WORK/site from .whl/ (then from the index, which the GPU
# box cannot reach) and put on PYTHONPATH. That site dir replaces a venv on purpose: a venv
# made from the image's own venv python would not see that venv's torch. No torch with CUDA
# means exit 2 at once, with what each interpreter had.
#
# Knobs (environment): GPU_CHECK_BUDGET_S=420, GPU_CHECK_ITERATIONS=300,
# GPU_CHECK_TRAIN_SECONDS=100 (MAX_WALLCLOCK_SECONDS, shrunk if time runs short),
# GPU_CHECK_WORK=${TMPDIR:-/tmp}/gpu_check, GPU_CHECK_WHEELS=.whl, PYTHON.
# Test hook (tests/bench/test_golf_bench.py, not a GPU check): GPU_CHECK_CPU=1 lets the probe
# accept a torch without CUDA and GPU_CHECK_EXTRA_ENV="K=V ..." is added to the training env,
# so the whole pipeline runs here on the tiny preset.
# Exit status: that of the training run (124: stopped by the timeout, 3: artifact over the
# cap), 2: no torch with CUDA, 4: packages missing, 5: data build failed, 64: bad argument.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=run
case "${1:-}" in
"") ;;
--dry-run) MODE=dry ;;
--fetch-wheels) MODE=fetch ;;
-h | --help)
	sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "gpu_check: unknown argument '$1' (use --dry-run, --fetch-wheels or --help)" >&2
	exit 64
	;;
esac

OUT_DIR=${OUT:-$REPO/bench/out}
WORK=${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/gpu_check}
WHEELS=${GPU_CHECK_WHEELS:-$REPO/.whl}
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
ITERATIONS=${GPU_CHECK_ITERATIONS:-300}
TRAIN_S=${GPU_CHECK_TRAIN_SECONDS:-100}
VARIANT=sp8192
DATA=$WORK/data
RUN_DIR=$WORK/run
RUN_ID=gpu_check
SITE=$WORK/site
# Seconds kept back after training for the summary, and needed after MAX_WALLCLOCK_SECONDS
# for compilation, export, the reload and the evaluations (TTT included).
RESERVE_S=20
AFTER_TRAIN_S=180
# The wheels the 'cuda' image lacks (bench/gpu_check.sh --fetch-wheels); versions as in .venv.
WHEEL_PINS=(zstandard==0.25.0)
WHEEL_PYVER=${GPU_CHECK_WHEEL_PYVER:-3.12}
PROBE_ARGS=()
EXTRA_ENV=()
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
	PROBE_ARGS=(--allow-cpu)
	read -r -a EXTRA_ENV <<<"${GPU_CHECK_EXTRA_ENV:-}"
fi

T_START=$(date +%s)
DEADLINE=$((T_START + BUDGET_S))
ENV_TXT=$OUT_DIR/env.txt

say() { printf 'gpu_check: %s\n' "$*"; }
show() { # print a command line, quoting only the words that need it
	local line="" word
	for word in "$@"; do
		if [[ $word =~ ^[A-Za-z0-9_./=:,+@%\<\>-]+$ ]]; then line+=" $word"; else line+=" $(printf %q "$word")"; fi
	done
	echo " $line"
}
remaining() { echo $((DEADLINE - $(date +%s))); }
# absolute_command NAME: NAME as an absolute path (the training runs in another directory);
# the directory is made absolute but links are kept, so a venv's python stays in its venv
absolute_command() {
	local found
	found=$(command -v "$1" 2>/dev/null) || return 1
	case $found in
	/*) echo "$found" ;;
	*) echo "$(cd "$(dirname "$found")" && pwd)/$(basename "$found")" ;;
	esac
}

if [ "$MODE" = fetch ]; then
	mkdir -p "$WHEELS"
	PLATFORMS=()
	for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
		PLATFORMS+=(--platform "$p")
	done
	PIP_PY=${PYTHON:-$REPO/.venv/bin/python}
	say "downloading ${WHEEL_PINS[*]} for CPython $WHEEL_PYVER x86-64 into $WHEELS"
	"$PIP_PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$WHEEL_PYVER" \
		--implementation cp "${PLATFORMS[@]}" -d "$WHEELS" "${WHEEL_PINS[@]}" || exit 4
	ls -l "$WHEELS"
	exit 0
fi

# The training command, built once so that the dry run prints exactly what a run executes.
TOKENIZER_PATH=$DATA/tokenizers/fineweb_8192_bpe.model
DATA_PATH=$DATA/datasets/fineweb10B_$VARIANT
data_cmd() { DATA_CMD=("$PY" -m golf_task.data tiny --out "$DATA" --variant "$VARIANT"); }
train_env() {
	TRAIN_ENV=(
		"DATA_PATH=$DATA_PATH"
		"TOKENIZER_PATH=$TOKENIZER_PATH"
		"ITERATIONS=$ITERATIONS"
		"MAX_WALLCLOCK_SECONDS=$1"
		"VAL_LOSS_EVERY=0"
		"RUN_ID=$RUN_ID"
		"GRAD_ACCUM_STEPS=8"
		"${EXTRA_ENV[@]}"
	)
}
torchrun_cmd() {
	local bin
	bin=$(dirname "$PY")/torchrun
	if [ -x "$bin" ]; then TORCHRUN=("$bin"); else TORCHRUN=("$PY" -m torch.distributed.run); fi
	TORCHRUN+=(--standalone --nproc_per_node=1 "$REPO/golf_task/train_gpt.py")
}
# supervised SECONDS LOG: the stamping wrapper that kills the whole process tree at the timeout
supervised() { SUP=("$PY" "$REPO/bench/gpu_summary.py" run --timeout "$1" --log "$2" --); }

CANDIDATES=()
[ -n "${PYTHON:-}" ] && CANDIDATES+=("$PYTHON")
CANDIDATES+=("$REPO/.venv/bin/python" python3 python)

if [ "$MODE" = dry ]; then
	PY=
	for c in "${CANDIDATES[@]}"; do
		if PY=$(absolute_command "$c"); then
			break
		fi
	done
	PY=${PY:-python3}
	train_env "$TRAIN_S"
	torchrun_cmd
	echo "gpu_check --dry-run: what a run executes, in order (nothing is run now)"
	echo "out: $OUT_DIR   work: $WORK   budget: ${BUDGET_S}s from the start"
	echo "1. interpreter: the first of [${CANDIDATES[*]}] whose probe exits 0 (torch+CUDA, numpy, sentencepiece, zstandard):"
	show "$PY" "$REPO/bench/gpu_summary.py" probe
	echo "   probe exit 3 (packages missing): install them, then probe again with PYTHONPATH=$SITE:"
	show "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" --target "$SITE" '<missing>'
	echo "   no interpreter with torch+CUDA: print what each had, exit 2"
	echo "2. GPU facts into $ENV_TXT:"
	show nvidia-smi -L
	show nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
	echo "3. data (cwd $REPO, hard timeout: the budget left):"
	supervised '<left>' "$OUT_DIR/data_build.log"
	data_cmd
	show "${SUP[@]}" "${DATA_CMD[@]}"
	echo "4. training (cwd $RUN_DIR), MAX_WALLCLOCK_SECONDS=$TRAIN_S or less if time runs short;"
	echo "   hard timeout = budget left - ${RESERVE_S}s; the script's own defaults for everything else:"
	echo "   env:"
	for kv in "${TRAIN_ENV[@]}"; do echo "     $kv"; done
	echo "     PYTHONUNBUFFERED=1"
	supervised "<left-$RESERVE_S>" "$OUT_DIR/train_console.log"
	show env "${TRAIN_ENV[@]}" PYTHONUNBUFFERED=1 "${SUP[@]}" "${TORCHRUN[@]}"
	echo "5. copy logs/$RUN_ID.txt to $OUT_DIR/train_log.txt, then the summary:"
	show "$PY" "$REPO/bench/gpu_summary.py" summary --log "$OUT_DIR/train_console.log" --env "$ENV_TXT" --exit-code '<rc>' --json "$OUT_DIR/summary.json"
	exit 0
fi

# ------------------------------------------------------------------------------- the check
mkdir -p "$OUT_DIR" "$WORK"
: >"$ENV_TXT"
say "start $(date -u +%FT%TZ), budget ${BUDGET_S}s, out $OUT_DIR"

finish() { # rc [message]: write the summary (whatever the log holds) and exit
	local rc=$1
	[ -n "${2:-}" ] && say "$2"
	[ -f "$RUN_DIR/logs/$RUN_ID.txt" ] && cp "$RUN_DIR/logs/$RUN_ID.txt" "$OUT_DIR/train_log.txt"
	echo "wall_s: $(($(date +%s) - T_START))" >>"$ENV_TXT"
	if [ -n "${PY:-}" ]; then
		"$PY" "$REPO/bench/gpu_summary.py" summary --log "$OUT_DIR/train_console.log" \
			--env "$ENV_TXT" --exit-code "$rc" --json "$OUT_DIR/summary.json" \
			>"$OUT_DIR/summary.txt"
		cat "$OUT_DIR/summary.txt"
	else
		cat "$ENV_TXT"
	fi
	exit "$rc"
}

# 1. an interpreter with torch+CUDA and the script's packages
PY=
NEEDS_DEPS=
for c in "${CANDIDATES[@]}"; do
	path=$(absolute_command "$c") || continue
	probe_out=$(timeout 120 "$path" "$REPO/bench/gpu_summary.py" probe "${PROBE_ARGS[@]}" 2>&1)
	rc=$?
	printf 'probe %s (exit %s):\n%s\n' "$path" "$rc" "$probe_out" | sed 's/^/  /'
	if [ "$rc" = 0 ]; then
		PY=$path
		break
	elif [ "$rc" = 3 ] && [ -z "$NEEDS_DEPS" ]; then
		NEEDS_DEPS=$path
		NEEDS_WHAT=$(sed -n 's/^missing: //p' <<<"$probe_out")
	fi
done
if [ -z "$PY" ] && [ -n "$NEEDS_DEPS" ]; then
	PY=$NEEDS_DEPS
	say "$PY has torch with CUDA but lacks: $NEEDS_WHAT; installing into $SITE"
	mkdir -p "$SITE"
	export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
	# shellcheck disable=SC2086 # NEEDS_WHAT is a list of package names
	if compgen -G "$WHEELS/*.whl" >/dev/null; then
		"$PY" -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" \
			--target "$SITE" $NEEDS_WHAT 2>&1 | tail -3
	else
		say "no wheels in $WHEELS (make them here with: bench/gpu_check.sh --fetch-wheels)"
	fi
	if ! "$PY" "$REPO/bench/gpu_summary.py" probe "${PROBE_ARGS[@]}" >/dev/null 2>&1; then
		# without a working pip: a wheel is a zip laid out for sys.path, so unpack it
		for w in "$WHEELS"/*.whl; do
			[ -f "$w" ] && "$PY" -m zipfile -e "$w" "$SITE" 2>&1 | tail -1
		done
	fi
	if ! "$PY" "$REPO/bench/gpu_summary.py" probe "${PROBE_ARGS[@]}" >/dev/null 2>&1; then
		say "trying the package index (5 s timeout)"
		# shellcheck disable=SC2086
		"$PY" -m pip install -q --no-deps --no-compile --timeout 5 --retries 0 --target "$SITE" \
			$NEEDS_WHAT 2>&1 | tail -3
	fi
	if ! "$PY" "$REPO/bench/gpu_summary.py" probe "${PROBE_ARGS[@]}" >"$WORK/probe.txt" 2>&1; then
		cat "$WORK/probe.txt"
		cat "$WORK/probe.txt" >>"$ENV_TXT"
		PY=
		finish 4 "FAIL: still missing: $(sed -n 's/^missing: //p' "$WORK/probe.txt"); carry wheels: bench/gpu_check.sh --fetch-wheels here, then carry [\".whl\"]"
	fi
fi
if [ -z "$PY" ]; then
	{
		echo "candidates: ${CANDIDATES[*]}"
		nvidia-smi -L 2>&1 | sed 's/^/nvidia_smi_L: /'
	} >>"$ENV_TXT"
	finish 2 "FAIL: no interpreter with torch that sees CUDA (probes above; nvidia-smi -L: $(nvidia-smi -L 2>&1 | head -1))"
fi
"$PY" "$REPO/bench/gpu_summary.py" probe "${PROBE_ARGS[@]}" >>"$ENV_TXT" 2>&1
say "interpreter: $PY"
[ ${#EXTRA_ENV[@]} -gt 0 ] && say "TEST MODE (GPU_CHECK_CPU=1), not a GPU check: extra env ${EXTRA_ENV[*]}"

# 2. GPU facts
{
	nvidia-smi -L 2>&1 | sed 's/^/nvidia_smi_L: /'
	echo "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | head -1)"
} >>"$ENV_TXT"
cat "$ENV_TXT"

# 3. the tiny sp8192 data
left=$(($(remaining) - RESERVE_S - 60))
t=$(date +%s)
supervised "$left" "$OUT_DIR/data_build.log"
data_cmd
(cd "$REPO" && "${SUP[@]}" "${DATA_CMD[@]}") >/dev/null
rc=$?
echo "data_build_s: $(($(date +%s) - t))" >>"$ENV_TXT"
if [ "$rc" != 0 ] || [ ! -f "$TOKENIZER_PATH" ] || ! compgen -G "$DATA_PATH/fineweb_train_*.bin" >/dev/null; then
	tail -20 "$OUT_DIR/data_build.log"
	finish 5 "FAIL: data build (exit $rc) left no $TOKENIZER_PATH or train shards"
fi
say "data built in $(($(date +%s) - t)) s"

# 4. the training run: full defaults, 1 process, 8-way accumulation
left=$(($(remaining) - RESERVE_S))
train_s=$TRAIN_S
((train_s > left - AFTER_TRAIN_S)) && train_s=$((left - AFTER_TRAIN_S))
((train_s < 30)) && train_s=30
train_env "$train_s"
torchrun_cmd
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR/logs/$RUN_ID".*
say "training: MAX_WALLCLOCK_SECONDS=$train_s, hard timeout ${left}s"
show env "${TRAIN_ENV[@]}" "${TORCHRUN[@]}"
supervised "$left" "$OUT_DIR/train_console.log"
(cd "$RUN_DIR" && env "${TRAIN_ENV[@]}" PYTHONUNBUFFERED=1 "${SUP[@]}" "${TORCHRUN[@]}")
rc=$?
finish "$rc" "training exit status $rc"
