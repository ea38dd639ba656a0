#!/usr/bin/env bash
# Builds the libFuzzer targets (clang; -fsanitize=fuzzer,address,undefined; build-fuzz/) and runs
# them one after another, one job each, from a scratch copy of their committed corpus
# (fuzz/corpus/<target>/), so that a run never changes the tree:
#
#   fuzz/run.sh [-t SECONDS | -n RUNS] [-o TABLE.md] [TARGET...]
#
# -t: each target runs that long (default 20: the CI stage); -n: until it has run that many
# inputs (the long run: -n 10000000). -o appends a Markdown table of the figures to a file.
# Prints a line per target: executions, seconds, executions per second, crashes. Exits 1 when a
# target crashed, broke an invariant, leaked or hung; its input is kept in build-fuzz/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=20)
table=""
while getopts "t:n:o:" opt; do
  case $opt in
    t) limit=(-max_total_time="$OPTARG") ;;
    n) limit=(-runs="$OPTARG") ;;
    o) table=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

cmake -S . -B build-fuzz -DVT_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build build-fuzz -j2 --target fuzz_targets >/dev/null || exit 1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi

artifacts=build-fuzz/artifacts
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The quarantine keeps freed memory poisoned for a while; a smaller one keeps long runs' memory flat.
export ASAN_OPTIONS=quarantine_size_mb=64:malloc_context_size=20
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  # leaks of the libraries a target drives, not ours (each file says whose and why)
  lsan=""
  [ -f "fuzz/lsan/$t.supp" ] && lsan="suppressions=fuzz/lsan/$t.supp"
  log="$artifacts/$t.log"
  start=$(date +%s.%N)
  LSAN_OPTIONS=$lsan "build-fuzz/fuzz/$t" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t-" "$scratch/$t" >"$log" 2>&1
  rc=$?
  seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    failed=1
    grep -E 'invariant broken|ERROR: |runtime error|Test unit written' "$log" | head -n 5
  fi
  runs=${runs:-0}
  rate=$(awk -v n="$runs" -v s="$seconds" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  printf "%-20s %12s executions %8s s %8s/s  %d crashes\n" "$t" "$runs" "$seconds" "$rate" "$crashes"
  rows+=("| \`$t\` | $runs | $seconds | $rate | $crashes |")
done
if [ -n "$table" ]; then
  {
    echo "| target | executions | seconds | executions/s | crashes |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
  } >>"$table"
fi
exit $failed
