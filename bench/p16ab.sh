#!/usr/bin/env bash
# A/B of pipelined sets: for each round and each binary in turn, a fresh
# 3-member cluster (bench/cluster.sh), then
#   redis-benchmark -t set -c 50 -P 16 -d 256 -n $N -r 10000
# at the leader, and each member's CPU per write (user + system, from
# /proc/PID/stat, over the measured run). Alternate binaries and compare
# means: single rounds on a shared machine move by ±15%.
#
#   bench/p16ab.sh ROUNDS BINARY...    # e.g. bench/p16ab.sh 6 /tmp/raftkv.old /tmp/raftkv.new
#
# Prints one line per round and binary: sets/s, then µs of CPU per write of
# each member (L = the leader, f = a follower). Needs redis-benchmark
# (Debian: redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=$1
shift
N=${N:-600000}
BASE=$ROOT/.bench-run/p16ab
command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap cluster_stop EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    cluster_start "$bin" "$BASE" 26
    leader=$(cluster_leader)
    redis-benchmark -p "2610$leader" -t set -c 50 -P 16 -d 256 -n 20000 -r 10000 -q >/dev/null 2>&1 # warm up
    before=()
    for i in 1 2 3; do before+=("$(cpu_ticks "${CLUSTER_PIDS[$((i - 1))]}")"); done
    rps=$(redis-benchmark -p "2610$leader" -t set -c 50 -P 16 -d 256 -n "$N" -r 10000 -q 2>&1 |
      tr '\r' '\n' | grep -Eo 'SET: [0-9.]+' | tail -1 | awk '{print $2}')
    line="round $round $bin sets/s=$rps"
    for i in 1 2 3; do
      after=$(cpu_ticks "${CLUSTER_PIDS[$((i - 1))]}")
      tag=f
      [[ $i == "$leader" ]] && tag=L
      line+=$(awk -v t=$((after - before[i - 1])) -v n="$N" -v hz="$(getconf CLK_TCK)" -v tag="$tag$i" \
        'BEGIN { printf " %s=%.2f", tag, t * 1e6 / hz / n }')
    done
    echo "$line"
    cluster_stop
  done
done
