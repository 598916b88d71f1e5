#!/usr/bin/env bash
# Per-operation costs of a 3-member raftkv cluster under anchorbench load:
# CPU µs, context switches and syscalls per operation, summed over the three
# members (perf stat over 5 s in the middle of a 10 s run). Throughput on this
# shared machine moves ±30% from minute to minute; these counts move less,
# so they are what to compare between two binaries, alternating runs:
#
#   bench/perop.sh OLD_BINARY NEW_BINARY [ROUNDS] [OPS]   # e.g. 3 "set get"
#
# Prints one line per binary, op and round. Needs perf (Debian: linux-perf)
# and the reference tools next to the project (../shared/tools).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS=${TOOLS:-$ROOT/../shared/tools}
OLD=$1 NEW=$2 ROUNDS=${3:-3} OPS=${4:-"set get"} CLIENTS=${CLIENTS:-64}
BASE=$ROOT/.bench-run/perop
mkdir -p "$BASE"
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
(cd "$TOOLS/anchorbench" && go build -o "$BASE/anchorbench" .)

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap cluster_stop EXIT

measure() { # measure OP: one line of per-op figures
  local out; out=$(mktemp)
  "$BASE/anchorbench" -target redis -addr 127.0.0.1:28101,127.0.0.1:28102,127.0.0.1:28103 -op "$1" \
    -clients "$CLIENTS" -duration 10s -warmup 2s -value-size 256 -keys 10000 2>/dev/null | grep '^RESULT' >"$out" &
  local bench=$!
  sleep 4
  local st; st=$(perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter \
    -p "$(IFS=,; echo "${CLUSTER_PIDS[*]}")" sleep 5 2>&1)
  wait $bench || true # the check below says what went wrong
  local ops; ops=$(sed -n 's/.*ops_per_sec=\([0-9.]*\).*/\1/p' "$out")
  if [[ -z $ops || $ops == 0 ]]; then
    echo "anchorbench served no $1 operations; see $BASE/rk/*.log" >&2
    exit 1
  fi
  awk -F, -v ops="$ops" -v op="$1" '{v[$3]=$1} END {n = ops * 5;
    printf "%s ops/s=%.0f cpu_us/op=%.0f cs/op=%.2f syscalls/op=%.2f\n", op, ops,
      v["task-clock"] * 1000 / n, v["context-switches"] / n, v["raw_syscalls:sys_enter"] / n }' <<<"$st"
  rm -f "$out"
}

for round in $(seq "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [[ $which == new ]] && bin=$NEW
    cluster_start "$bin" "$BASE/rk" 28
    for op in $OPS; do echo "round $round $which $(measure "$op")"; done
  done
done
