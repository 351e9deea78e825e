#!/usr/bin/env bash
# make demo: a local three-server orch cluster doing real work, ending with
# something a person can see working. It leaves the cluster running;
# `make demo-down` (scripts/demo.sh down) stops it and removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/bin
IPS=(127.0.0.11 127.0.0.12 127.0.0.13)
export ORCH_ADDR=http://127.0.0.11:7400,http://127.0.0.12:7400,http://127.0.0.13:7400

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "demo failed: $*" >&2; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

down() {
  for f in "$DEMO"/*.pid; do
    [[ -e "$f" ]] || continue
    pid=$(cat "$f"); kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$DEMO"
}

if [[ "${1:-}" == down ]]; then down; echo "demo cluster stopped and removed"; exit 0; fi

start_server() { # name ip
  local name=$1 ip=$2 join=()
  [[ $ip != "${IPS[0]}" ]] && join=(--join "${IPS[0]}")
  # Started from a subshell, so this shell reports nothing when one is killed.
  (setsid "$BIN/orchd" agent --server --name "$name" --bind "$ip" --data-dir "$DEMO/$name" \
    --bootstrap-expect 3 "${join[@]}" >>"$DEMO/$name.log" 2>&1 < /dev/null &
   echo $! > "$DEMO/$name.pid")
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

down
mkdir -p "$DEMO"
say "Starting three orch servers (Raft + gossip + API) on ${IPS[*]}"
for i in 0 1 2; do start_server "s$((i + 1))" "${IPS[$i]}"; done
wait_for 30 "a leader and three voters" voters 3
run "$BIN/orchctl" members
run "$BIN/orchctl" operator raft list-peers

say "Applying testdata/demo/app.yaml"
run "$BIN/orchctl" apply -f testdata/demo/app.yaml
run "$BIN/orchctl" -n shop get configmaps,secrets,deployments,services
run "$BIN/orchctl" -n shop apply -f testdata/demo/app.yaml | tee "$DEMO/apply2.out"
grep -q "configmap/shop-config unchanged" "$DEMO/apply2.out" || fail "second apply was not a no-op"

OLD=$(leader)
[[ -n "$OLD" ]] || fail "no leader"
say "Killing the leader ($OLD) with kill -9"
run kill -9 "$(cat "$DEMO/$OLD.pid")"
NEW=""
for _ in $(seq 200); do NEW=$(leader); [[ -n "$NEW" && "$NEW" != "$OLD" ]] && break; sleep 0.1; done
[[ -n "$NEW" && "$NEW" != "$OLD" ]] || fail "no new leader after killing $OLD"
run "$BIN/orchctl" operator raft list-peers
echo "new leader: $NEW"

say "The data survived; writes keep working with one server down"
run "$BIN/orchctl" -n shop get configmap shop-config -o yaml | tee "$DEMO/cm.out"
grep -q "hello from the edge" "$DEMO/cm.out" || fail "data lost"
run "$BIN/orchctl" -n shop label configmap shop-config failover=survived
run "$BIN/orchctl" -n shop get configmaps --show-labels

say "Restarting $OLD with its data dir: it rejoins and catches up"
start_server "$OLD" "${IPS[$(( ${OLD#s} - 1 ))]}"
wait_for 30 "$OLD to rejoin" voters 3
wait_for 30 "$OLD to serve the new label" bash -c "curl -sf 'http://${IPS[$(( ${OLD#s} - 1 ))]}:7400/api/v1/namespaces/shop/configmaps/shop-config?stale=true' | grep -q survived"
run curl -s "http://${IPS[$(( ${OLD#s} - 1 ))]}:7400/api/v1/namespaces/shop/configmaps/shop-config?stale=true"
echo
run "$BIN/orchctl" operator raft list-peers

say "Demo finished: the cluster is still running"
cat <<TXT
Try next:
  export ORCH_ADDR=$ORCH_ADDR
  bin/orchctl get namespaces
  bin/orchctl -n shop get deployments,services,configmaps -o wide
  bin/orchctl operator raft transfer-leader
  bin/orchctl get configmaps -A -w          # then change something in another terminal
  kill -9 \$(cat .demo/$NEW.pid)            # and watch the cluster carry on
Logs are in .demo/*.log. Stop everything with: make demo-down
TXT
