# Sourced by bench/run.sh, perop.sh, p16ab.sh and p16ratio.sh: a local 3-member raftkv cluster
# on loopback, with fsync on, its data on the real disk under DIR.
# MEMBER_PROCS, if set, is each member's GOMAXPROCS (bench/run.sh gives etcd's
# members the same): three members sharing two cores each default to two.

CLUSTER_PIDS=()
CLUSTER_PORTS=

# cluster_start BINARY DIR PORTS: member i listens on 127.0.0.1:${PORTS}00i
# (peers), ${PORTS}10i (RESP) and ${PORTS}20i (HTTP). Returns once a leader
# is elected.
cluster_start() {
  local bin=$1 dir=$2 ports=$3
  cluster_stop
  CLUSTER_PORTS=$ports
  rm -rf "$dir"; mkdir -p "$dir"
  local ic=1=127.0.0.1:${ports}001,2=127.0.0.1:${ports}002,3=127.0.0.1:${ports}003
  for i in 1 2 3; do
    GOMAXPROCS=${MEMBER_PROCS:-} setsid "$bin" server --id $i --data-dir "$dir/m$i" --peer-addr 127.0.0.1:${ports}00$i \
      --redis-addr 127.0.0.1:${ports}10$i --http-addr 127.0.0.1:${ports}20$i --initial-cluster $ic \
      >"$dir/m$i.log" 2>&1 &
    CLUSTER_PIDS+=($!)
  done
  for _ in $(seq 150); do
    cluster_leader >/dev/null && return 0
    sleep 0.2
  done
  echo "raftkv elected no leader; see $dir/*.log" >&2
  exit 1
}

# cluster_leader prints the number (1-3) of the member that says it leads;
# it fails if none does. Its RESP port is ${CLUSTER_PORTS}10N.
cluster_leader() {
  local i
  for i in 1 2 3; do
    if curl -fsS "http://127.0.0.1:${CLUSTER_PORTS}20$i/status" 2>/dev/null | grep -Eq '"role": *"leader"'; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

# cluster_stop stops the members cluster_start started.
cluster_stop() {
  local pid
  for pid in "${CLUSTER_PIDS[@]:-}"; do [[ -n $pid ]] && kill "$pid" 2>/dev/null || true; done
  for pid in "${CLUSTER_PIDS[@]:-}"; do [[ -n $pid ]] && wait "$pid" 2>/dev/null || true; done
  CLUSTER_PIDS=()
}
