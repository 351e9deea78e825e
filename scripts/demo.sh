#!/usr/bin/env bash
# make demo: a local orch cluster doing real work, ending with something a
# person can see working. Five "hosts" on one machine: three servers and two
# workers, each worker in its own network namespace, all on one bridge
# (10.200.0.0/24, addresses only inside this machine). It leaves the cluster
# running; `make demo-down` (scripts/demo.sh down) stops it and removes
# everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/bin
BR=orchdemo0
SERVERS=(10.200.0.11 10.200.0.12 10.200.0.13)
WORKERS=(w1 w2)
WORKER_IPS=(10.200.0.21 10.200.0.22)
CTRD=/run/orch-demo/containerd
export ORCH_ADDR=https://10.200.0.11:7400,https://10.200.0.12:7400,https://10.200.0.13:7400
# Security is on: the API speaks HTTPS with certificates of the cluster CA
# the first server creates; orchctl trusts that CA only (ORCH_CA_FILE).
export ORCH_CA_FILE=$DEMO/ca.crt

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "demo failed: $*" >&2; echo "logs: $DEMO/*.log" >&2; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

down() {
  for f in "$DEMO"/*.pid; do
    [[ -e "$f" ]] || continue
    pid=$(cat "$f"); kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  scripts/containerd.sh stop "$CTRD" >/dev/null 2>&1 || true
  # The pods' network namespaces are bind mounts the workers made; pods
  # outlive their worker by design, so they are unmounted here.
  if [[ -d /run/orch-demo ]]; then
    awk '$2 ~ "^/run/orch-demo/" { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  for w in "${WORKERS[@]}"; do
    ip netns del "orchdemo-$w" 2>/dev/null || true
    rm -rf "/run/orch-demo/$w"
  done
  ip link del "$BR" 2>/dev/null || true
  rm -rf "$DEMO" /run/orch-demo
}

if [[ "${1:-}" == down ]]; then down; echo "demo cluster stopped and removed"; exit 0; fi

net_up() {
  ip link add "$BR" type bridge
  ip addr add 10.200.0.1/24 dev "$BR"
  for ip in "${SERVERS[@]}"; do ip addr add "$ip/24" dev "$BR"; done
  ip link set "$BR" up
  for i in "${!WORKERS[@]}"; do
    local w=${WORKERS[$i]} ns=orchdemo-${WORKERS[$i]}
    ip netns add "$ns"
    ip link add "$w-host" type veth peer name "$w-eth"
    ip link set "$w-eth" netns "$ns"
    ip link set "$w-host" master "$BR" up
    ip -n "$ns" addr add "${WORKER_IPS[$i]}/24" dev "$w-eth"
    ip -n "$ns" link set "$w-eth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via 10.200.0.1
  done
}

start_server() { # name ip
  local name=$1 ip=$2 join=()
  [[ $ip != "${SERVERS[0]}" ]] && join=(--join "${SERVERS[0]}")
  # Started from a subshell, so this shell reports nothing when one is killed.
  (setsid "$BIN/orchd" agent --server --name "$name" --bind "$ip" --data-dir "$DEMO/$name" \
    --token-file "$DEMO/token" --bootstrap-expect 3 "${join[@]}" >>"$DEMO/$name.log" 2>&1 < /dev/null &
   echo $! > "$DEMO/$name.pid")
}

start_worker() { # index
  local w=${WORKERS[$1]} ip=${WORKER_IPS[$1]}
  # nsenter, not `ip netns exec`: the latter remounts /sys and the worker
  # needs the cgroup tree to run containers.
  (setsid nsenter --net="/run/netns/orchdemo-$w" "$BIN/orch-worker" --name "$w" --bind "$ip" \
    --join "${SERVERS[0]}" --token-file "$DEMO/token" --data-dir "$DEMO/$w" \
    --containerd-socket "$CTRD/containerd.sock" --containerd-namespace "$w" \
    --runtime-state-dir "/run/orch-demo/$w" >>"$DEMO/$w.log" 2>&1 < /dev/null &
   echo $! > "$DEMO/$w.pid")
}

wait_for() { # seconds description command...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

# list-peers -o json, flattened to one peer per line whatever the indentation.
peers()  { "$BIN/orchctl" operator raft list-peers -o json | tr -d ' \n' | tr '}' '\n'; }
leader() { { peers || true; } | sed -n 's/.*"id":"\([^"]*\)".*"leader":true.*/\1/p'; }
voters() { [[ $(peers | grep -c '"voter":true') -eq $1 ]]; }
ready_nodes() { [[ $("$BIN/orchctl" get nodes --no-headers | grep -c ' Ready ') -eq $1 ]]; }
ready_web()   { # N: the web Deployment has N ready replicas (READY column N/N)
  "$BIN/orchctl" -n shop get deployment web --no-headers | awk -v n="$1" '$2 == n "/" n { ok = 1 } END { exit !ok }'; }

down
mkdir -p "$DEMO" /run/orch-demo
# A secret for the cluster (--token): the servers share it; it seals the
# cluster CA's key, encrypts gossip and is the admin's bearer token.
head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DEMO/token"
chmod 600 "$DEMO/token"
export ORCH_TOKEN=$(cat "$DEMO/token")

say "Five hosts on bridge $BR: servers ${SERVERS[*]}, workers ${WORKER_IPS[*]} (network namespaces)"
net_up
[[ -f testdata/images/out/web.tar ]] || { say "Building the test images (make images)"; make -s images; }
scripts/containerd.sh start "$CTRD" >/dev/null

say "Starting three orch servers (Raft + gossip + API, scheduler and controllers on the leader)"
for i in 0 1 2; do start_server "s$((i + 1))" "${SERVERS[$i]}"; done
wait_for 30 "the cluster CA (s1 creates it before bootstrapping)" test -s "$DEMO/s1/tls/ca.crt"
cp "$DEMO/s1/tls/ca.crt" "$ORCH_CA_FILE"
wait_for 30 "a leader and three voters" voters 3
run "$BIN/orchctl" operator raft list-peers

say "Starting two workers; each joins by gossip and runs its pods on containerd"
for i in "${!WORKERS[@]}"; do start_worker "$i"; done
wait_for 60 "two Ready nodes" ready_nodes 2
for w in "${WORKERS[@]}"; do # no registry here: the image goes straight to each worker's containerd
  ctr --address "$CTRD/containerd.sock" -n "$w" images import testdata/images/out/web.tar >/dev/null
done
run "$BIN/orchctl" get nodes -o wide

say "Applying testdata/demo/app.yaml: ConfigMap, Secret, Deployment web (3 replicas), NodePort Service"
run "$BIN/orchctl" apply -f testdata/demo/app.yaml
run "$BIN/orchctl" -n shop rollout status deployment/web --timeout 120s
run "$BIN/orchctl" -n shop get pods -o wide
run "$BIN/orchctl" -n shop get services,endpoints

say "The web service answers on every worker's NodePort, from pods on both workers"
for ip in "${WORKER_IPS[@]}"; do
  for _ in 1 2 3; do run curl -sf --max-time 3 "http://$ip:30080/"; done
done | tee "$DEMO/curl.out"
grep -q "hello from web-" "$DEMO/curl.out" || fail "the service did not answer"

OLD=$(leader)
[[ -n "$OLD" ]] || fail "no leader"
say "Killing the leader ($OLD) with kill -9: a new leader takes over, the pods keep serving"
run kill -9 "$(cat "$DEMO/$OLD.pid")"
NEW=""
for _ in $(seq 200); do NEW=$(leader); [[ -n "$NEW" && "$NEW" != "$OLD" ]] && break; sleep 0.1; done
[[ -n "$NEW" && "$NEW" != "$OLD" ]] || fail "no new leader after killing $OLD"
run "$BIN/orchctl" operator raft list-peers
run curl -sf --max-time 3 "http://${WORKER_IPS[0]}:30080/"
run "$BIN/orchctl" -n shop scale deployment web --replicas 4
wait_for 60 "4 ready web pods" ready_web 4
run "$BIN/orchctl" -n shop get pods -o wide

say "Restarting $OLD with its data dir: it rejoins and catches up"
idx=$(( ${OLD#s} - 1 ))
start_server "$OLD" "${SERVERS[$idx]}"
wait_for 60 "$OLD to catch up (/readyz)" curl -sf --cacert "$ORCH_CA_FILE" "https://${SERVERS[$idx]}:7400/readyz"
run "$BIN/orchctl" operator raft list-peers

say "Demo finished: the cluster is still running"
cat <<TXT
Try next:
  export ORCH_CONFIG=$DEMO/s1/admin.conf   # or: ORCH_ADDR, ORCH_TOKEN and ORCH_CA_FILE=.demo/ca.crt
  bin/orchctl -n shop get pods -o wide
  curl http://${WORKER_IPS[1]}:30080/
  bin/orchctl -n shop set image deployment/web web=orch.test/web:v1 && bin/orchctl -n shop rollout status deployment/web
  bin/orchctl cordon w1 && bin/orchctl drain w1
  bin/orchctl operator raft transfer-leader
Logs are in .demo/*.log. Stop everything with: make demo-down
TXT
