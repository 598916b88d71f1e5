#!/usr/bin/env bash
# The -P 16 target as a ratio, measured by alternation: each round runs the
# target's command,
#   redis-benchmark -t set -c 50 -P 16 -d 256 -n $N
# against a fresh 3-member raftkv cluster (bench/cluster.sh, at its leader)
# and then against Redis with appendfsync always (../shared/tools/run-redis.sh,
# its data on the same disk), and prints both and their ratio. bench/run.sh's
# own -P 16 points measure each side once, minutes apart (Redis's in half a
# second), so their ratio moves with the machine's load (25-30% in sessions
# 11-12); alternating rounds and comparing means is what tells a change in
# the code from a change in the machine. bench/run.sh ends with this script.
#
#   bench/p16ratio.sh ROUNDS BINARY    # e.g. bench/p16ratio.sh 3 /tmp/raftkv
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS=${TOOLS:-$ROOT/../shared/tools}
ROUNDS=$1
BIN=$2
N=${N:-600000}
BASE=$ROOT/.bench-run/p16ratio
command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap 'cluster_stop; "$TOOLS/run-redis.sh" stop >/dev/null 2>&1 || true' EXIT

# sets PORT: the target's command; prints the overall sets/s.
sets() {
  redis-benchmark -p "$1" -t set -c 50 -P 16 -d 256 -n 20000 -q >/dev/null 2>&1 # warm up
  redis-benchmark -p "$1" -t set -c 50 -P 16 -d 256 -n "$N" -q 2>&1 |
    tr '\r' '\n' | grep -Eo 'SET: [0-9.]+' | tail -1 | awk '{print $2}'
}

sum=0
for round in $(seq "$ROUNDS"); do
  cluster_start "$BIN" "$BASE" 26
  leader=$(cluster_leader) || { echo "round $round: no member leads; see $BASE/*.log" >&2; exit 1; }
  rk=$(sets "2610$leader" || true)
  cluster_stop
  DURABILITY=always "$TOOLS/run-redis.sh" start >/dev/null
  rd=$(sets 16379 || true)
  "$TOOLS/run-redis.sh" stop >/dev/null
  [[ -n $rk && -n $rd ]] || { echo "round $round: redis-benchmark gave no figure (raftkv '$rk', Redis '$rd')" >&2; exit 1; }
  ratio=$(awk -v a="$rk" -v b="$rd" 'BEGIN { printf "%.3f", a / b }')
  sum=$(awk -v s="$sum" -v r="$ratio" 'BEGIN { print s + r }')
  echo "round $round raftkv=$rk redis-always=$rd ratio=$ratio"
done
awk -v s="$sum" -v n="$ROUNDS" 'BEGIN { printf "mean ratio %.3f over %d rounds\n", s / n, n }'
