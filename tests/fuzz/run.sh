#!/usr/bin/env bash
# Runs each fuzz target for a while and sums up: `make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS=...]`.
#
#   tests/fuzz/run.sh <build-fuzz>/tests/fuzz <seconds> [fuzz_<module> ...]
#
# One target after another, each for <seconds>. New inputs accumulate in the build tree's
# corpus/<target>, so runs build on each other; the seed corpus tests/fuzz/corpus/<target> is read,
# never written. A crash or a violated property leaves its input as <dir>/<target>-crash-<sha1>
# (replay it: <dir>/<target> <file>) and the log as <dir>/<target>.log, and fails the run.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 <fuzz build dir> <seconds> [target...]" >&2
    exit 2
fi
dir=$1
secs=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$src"/fuzz_*.c; do
        targets+=("$(basename "$f" .c)")
    done
fi

final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

total=0
failed=0
printf '%-12s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    if [ ! -x "$dir/$t" ]; then
        printf '%-12s %12s %10s %8s  %s\n' "$t" - - - "FAILED: $dir/$t is not built"
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$dir/corpus/$t"
    log=$dir/$t.log
    "$dir/$t" -max_total_time="$secs" -timeout=5 -print_final_stats=1 \
        -artifact_prefix="$dir/$t-" "$dir/corpus/$t" "$src/corpus/$t" >"$log" 2>&1
    rc=$?
    execs=$(final_stat number_of_executed_units "$log")
    execs=${execs:-0}
    rate=$(final_stat average_exec_per_sec "$log")
    units=$(find "$dir/corpus/$t" -type f | wc -l)
    total=$((total + execs))
    if [ $rc -eq 0 ]; then
        result=ok
    else
        failed=$((failed + 1))
        why=$(grep -m1 -E 'property violated|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$log")
        input=$(sed -n "s/.*Test unit written to //p" "$log" | tail -1)
        result="FAILED (exit $rc): ${why:-see $log}${input:+; input: $input}"
    fi
    printf '%-12s %12s %10s %8s  %s\n' "$t" "$execs" "${rate:--}" "$units" "$result"
done
echo "total: $total executions in ${#targets[@]} targets, $failed failed (logs: $dir/<target>.log)"
[ $failed -eq 0 ]
