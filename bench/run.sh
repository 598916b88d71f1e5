#!/usr/bin/env bash
# Measures raftkv next to etcd 3.4 and Redis 7 on this machine, in one run, with
# the same load generator (../shared/tools/anchorbench), and writes a table and
# plots. Figures on a shared 2-core machine are noisy: compare only within a run.
#
#   bench/run.sh                 # the whole matrix (~15-20 minutes)
#   QUICK=1 bench/run.sh         # 5 s per point, fewer points (~5 minutes)
#   RAFTKV_BIN=/path/raftkv bench/run.sh   # measure that binary instead of building ./cmd/raftkv
#   MEMBER_PROCS=1 bench/run.sh  # GOMAXPROCS of every raftkv and etcd member (default: the runtime's)
#
# Output: bench/results/<timestamp>.tsv (one row per point), the
# redis-benchmark and disk figures beside it (<timestamp>.*.txt), a summary
# on stdout, and docs/bench-throughput.svg, docs/bench-latency.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS=${TOOLS:-$ROOT/../shared/tools}
DUR=${DUR:-15s}
CLIENTS=${CLIENTS:-"1 16 64"}
if [[ ${QUICK:-0} == 1 ]]; then DUR=5s; CLIENTS="1 64"; fi
# Data on the real disk (fsync must mean something), never tmpfs.
BASE=${BASE:-$ROOT/.bench-run}
OUT=$ROOT/bench/results
mkdir -p "$OUT" "$BASE"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV=$OUT/$STAMP.tsv

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${@:2}" >/dev/null; }; }
need etcd etcd-server etcd-client
need redis-server redis-server redis-tools
need redis-benchmark redis-tools

echo "== building raftkv, anchorbench, fsynclat"
# RAFTKV_BIN: measure a prebuilt binary instead of building this tree (for
# example one built from another checkout, to compare two versions).
if [[ -n ${RAFTKV_BIN:-} ]]; then cp "$RAFTKV_BIN" "$BASE/raftkv"; else go build -o "$BASE/raftkv" ./cmd/raftkv; fi
(cd "$TOOLS/anchorbench" && go build -o "$BASE/anchorbench" . && go build -o "$BASE/fsynclat" ./cmd/fsynclat)

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
# cpu_ticks sums user+system clock ticks of the given pids.
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }

cleanup() { cluster_stop; "$TOOLS/run-etcd-cluster.sh" stop >/dev/null 2>&1 || true; "$TOOLS/run-redis.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

printf 'target\top\tclients\tops_per_sec\tp50_ms\tp99_ms\tcpu_ms_per_op\n' > "$TSV"
# point TARGET OP CLIENTS ADDR KIND [PIDS...]: one anchorbench run, one TSV row.
point() {
  local target=$1 op=$2 clients=$3 addr=$4 kind=$5; shift 5
  local before after line
  before=$(cpu_ticks "$@")
  line=$("$BASE/anchorbench" -target "$kind" -addr "$addr" -op "$op" -clients "$clients" -duration "$DUR" \
         -warmup 2s -value-size 256 -keys 10000 2>/dev/null | grep '^RESULT' || true)
  after=$(cpu_ticks "$@")
  local ops p50 p99 n cpu=""
  ops=$(sed -n 's/.*ops_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  if [[ $# -gt 0 && -n $ops ]]; then
    n=$(awk -v o="$ops" -v d="${DUR%s}" 'BEGIN{print o*d}')
    cpu=$(awk -v t=$((after - before)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{ if (n>0) printf "%.4f", t*1000/hz/n }')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$op" "$clients" "${ops:-0}" "${p50:-}" "${p99:-}" "$cpu" | tee -a "$TSV"
}

echo "== disk floor: one 256-byte write + fdatasync"
"$BASE/fsynclat" -dir "$BASE" -mode append -n 500 -size 256 | tail -1 | tee "$OUT/$STAMP.fsync.txt"
# The members' logs share this disk, and a write's fsyncs on the leader and
# the followers run at about the same time: what one costs then.
echo "== disk, the same over preallocated blocks (as the WAL writes): alone, then three writers at once"
"$BASE/fsynclat" -dir "$BASE" -mode prealloc -n 500 -size 256 | tail -1 | sed 's/^/alone: /' | tee -a "$OUT/$STAMP.fsync.txt"
writers=()
for i in 1 2 3; do
  mkdir -p "$BASE/fsync$i"
  "$BASE/fsynclat" -dir "$BASE/fsync$i" -mode prealloc -n 500 -size 256 | tail -1 | sed "s/^/writer $i of 3: /" >"$BASE/fsync$i.txt" &
  writers+=($!)
done
wait "${writers[@]}"
cat "$BASE"/fsync[123].txt | tee -a "$OUT/$STAMP.fsync.txt"

echo "== raftkv, 3 members"
cluster_start "$BASE/raftkv" "$BASE/rk" 27
RK=127.0.0.1:27101,127.0.0.1:27102,127.0.0.1:27103
for op in set get; do for c in $CLIENTS; do point raftkv $op $c $RK redis "${CLUSTER_PIDS[@]}"; done; done
LP=2710$(cluster_leader || echo 1)
# One client straight to the leader: the path the latency target's floor
# (one fdatasync + two loopback round trips) describes. A client of a
# follower adds the forward to the leader and the commit's way back.
for op in set get; do point raftkv-leader $op 1 127.0.0.1:$LP redis "${CLUSTER_PIDS[@]}"; done
redis-benchmark -p "$LP" -t set -c 50 -P 16 -d 256 -n 200000 -q 2>/dev/null | tr '\r' '\n' | grep -i "set:" | tail -1 | sed 's/^/raftkv redis-benchmark -P 16: /' | tee -a "$OUT/$STAMP.redis-benchmark.txt"
redis-benchmark -p "$LP" -t set,get -c 50 -d 256 -n 100000 -q 2>/dev/null | tr '\r' '\n' | grep -iE "^(set|get): [0-9.]+ requests per second" | sed 's/^/raftkv redis-benchmark: /' | tee -a "$OUT/$STAMP.redis-benchmark.txt"
cluster_stop

echo "== etcd 3.4, 3 members"
GOMAXPROCS=${MEMBER_PROCS:-} "$TOOLS/run-etcd-cluster.sh" start 3 >/dev/null
ET=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
ETCD_PIDS=($(cat /tmp/anchors-etcd/*.pid))
for op in set get; do for c in $CLIENTS; do
  point etcd $op $c $ET etcd "${ETCD_PIDS[@]}"
  "$TOOLS/run-etcd-cluster.sh" compact >/dev/null 2>&1 || true
done; done
"$TOOLS/run-etcd-cluster.sh" stop >/dev/null

echo "== Redis 7, appendfsync always"
DURABILITY=always "$TOOLS/run-redis.sh" start >/dev/null
for op in set get; do for c in $CLIENTS; do point redis-always $op $c 127.0.0.1:16379 redis; done; done
redis-benchmark -p 16379 -t set -c 50 -P 16 -d 256 -n 200000 -q 2>/dev/null | tr '\r' '\n' | grep -i "set:" | tail -1 | sed 's/^/redis-always redis-benchmark -P 16: /' | tee -a "$OUT/$STAMP.redis-benchmark.txt"
redis-benchmark -p 16379 -t set,get -c 50 -d 256 -n 100000 -q 2>/dev/null | tr '\r' '\n' | grep -iE "^(set|get): [0-9.]+ requests per second" | sed 's/^/redis-always redis-benchmark: /' | tee -a "$OUT/$STAMP.redis-benchmark.txt"
"$TOOLS/run-redis.sh" stop >/dev/null

echo "== Redis 7, no persistence"
DURABILITY=none "$TOOLS/run-redis.sh" start >/dev/null
for c in $CLIENTS; do point redis-none get $c 127.0.0.1:16379 redis; done
"$TOOLS/run-redis.sh" stop >/dev/null

# The -P 16 points above ran once each, minutes apart; the ratio the target
# names is measured again by alternation (bench/p16ratio.sh), which the
# machine's load moves less.
echo "== -P 16, raftkv and Redis appendfsync always alternated"
if [[ ${QUICK:-0} == 1 ]]; then P16_ROUNDS=1 P16_N=200000; else P16_ROUNDS=3 P16_N=600000; fi
N=$P16_N "$ROOT/bench/p16ratio.sh" "$P16_ROUNDS" "$BASE/raftkv" | tee "$OUT/$STAMP.p16ratio.txt"

echo "== plots"
go run ./bench/plot -in "$TSV" -out docs
cp "$TSV" "$OUT/latest.tsv"
echo "results: $TSV"
