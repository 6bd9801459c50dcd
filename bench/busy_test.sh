#!/usr/bin/env bash
# `make test` on a busy machine (issue 13): BURNERS processes spin on the CPU (default: one
# per core) for as long as the suite runs, then the wall time and exit code are printed.
#
#   bench/busy_test.sh                          # the whole suite, -n 2, every core kept busy
#   BURNERS=0 bench/busy_test.sh                # the same, idle: the figure to compare with
#   bench/busy_test.sh tests/helm/models        # a subset (passed to pytest as PYTEST_ARGS)
#   BURN_LIMIT_S=600 bench/busy_test.sh ...     # burners stop by themselves after 600 s
#
# Each burner is a bash loop that ends by itself after BURN_LIMIT_S (default 3600 s), so a
# killed script cannot leave one spinning for long; on any exit the script also kills each
# burner by the pid it started (never by name) and checks that none is left. INT or TERM
# stops the test run too (its process group, by the id of the make it started).
set -u
cd "$(dirname "$0")/.."

BURNERS=${BURNERS:-$(nproc)}
BURN_LIMIT_S=${BURN_LIMIT_S:-3600}
burners=()

stop_burners() {
    local pid
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${burners[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for pid in "${burners[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "busy_test: burner $pid is still running" >&2
        fi
    done
    burners=()
}
runner=""  # the test run's pid, which is also its process group (setsid)
on_signal() {
    if [ -n "$runner" ]; then
        kill -TERM -- "-$runner" 2>/dev/null  # make, pytest and its xdist workers
    fi
    exit 130
}
trap stop_burners EXIT
trap on_signal INT TERM

# Bring .venv up to date first (`make test`'s own first step), idle and untimed; SKIP_INSTALL=1
# skips it (a shared venv that others are using). The timed run then only runs the suite.
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    make .venv/.installed || exit $?
fi

load_before=$(cut -d' ' -f1 /proc/loadavg)  # the 1-minute load of everything else
for _ in $(seq 1 "$BURNERS"); do
    # `SECONDS` counts from the subshell's own start: each burner stops after the limit
    ( SECONDS=0; while (( SECONDS < BURN_LIMIT_S )); do :; done ) &
    burners+=("$!")
done

start=$(date +%s%N)
# In the background, so that a signal to this script is handled at once (bash runs traps
# only between commands), and in a process group of its own, so that it can be stopped whole.
setsid make -o .venv/.installed test PYTEST_ARGS="$*" &
runner=$!
wait "$runner"
rc=$?
runner=""
end=$(date +%s%N)
load_after=$(cut -d' ' -f1 /proc/loadavg)
stop_burners
ms=$(( (end - start) / 1000000 ))
printf 'busy_test: burners=%s cores=%s wall_s=%d.%03d rc=%s load=%s->%s args=%s\n' \
    "$BURNERS" "$(nproc)" $((ms / 1000)) $((ms % 1000)) "$rc" "$load_before" "$load_after" \
    "${*:-(whole suite)}"
exit "$rc"
