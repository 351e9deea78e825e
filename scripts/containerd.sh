#!/usr/bin/env bash
# A private containerd for `make demo` and development: its own root, state,
# socket and config under DIR (default /run/orch-containerd), CRI disabled.
# No systemd runs on these machines, so nothing else starts containerd.
#
#   scripts/containerd.sh start [DIR]   start it (if not running), wait until it
#                                       answers, print its socket path
#   scripts/containerd.sh stop  [DIR]   kill its containers and it, unmount and
#                                       remove DIR
#
# Needs root and `scripts/deps.sh runtime`.
set -euo pipefail

cmd=${1:-}
DIR=${2:-/run/orch-containerd}
SOCK=$DIR/containerd.sock
PIDFILE=$DIR/containerd.pid

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answers() { ctr --address "$SOCK" --timeout 1s version >/dev/null 2>&1; }

start() {
  if running && answers; then echo "$SOCK"; return; fi
  mkdir -p "$DIR/root" "$DIR/state"
  cat >"$DIR/config.toml" <<CONF
version = 2
root = "$DIR/root"
state = "$DIR/state"
# CRI wants a pause image from a registry; orch drives containerd itself.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/opt"
CONF
  # setsid: the daemon outlives this shell and ignores its terminal.
  setsid containerd --config "$DIR/config.toml" >>"$DIR/containerd.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 200); do
    answers && { echo "$SOCK"; return; }
    running || break
    sleep 0.05
  done
  echo "containerd.sh: containerd did not answer on $SOCK; last log lines:" >&2
  tail -n 20 "$DIR/containerd.log" >&2 || true
  exit 1
}

stop() {
  local nss=()
  if running && answers; then
    # Kill and delete every task first, so no shim outlives its daemon.
    mapfile -t nss < <(ctr --address "$SOCK" namespaces list -q)
    for ns in "${nss[@]}"; do
      for t in $(ctr --address "$SOCK" -n "$ns" tasks list -q); do
        ctr --address "$SOCK" -n "$ns" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
        for _ in $(seq 50); do
          ctr --address "$SOCK" -n "$ns" tasks delete "$t" >/dev/null 2>&1 && break
          sleep 0.1
        done
      done
    done
  fi
  if [[ -f $PIDFILE ]]; then
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Overlay and other mounts left under DIR, deepest first.
  awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$DIR"
  # What runc and the shims leave outside DIR: the parent cgroup of each
  # namespace's containers, runc's state root per namespace, the shim socket
  # directory. rmdir removes only what is empty, so another containerd's
  # state is safe.
  for ns in "${nss[@]}"; do
    [[ -n $ns ]] || continue
    find /sys/fs/cgroup/*/"$ns" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    rmdir "/run/containerd/runc/$ns" 2>/dev/null || true
  done
  rmdir /run/containerd/runc /run/containerd/s /run/containerd 2>/dev/null || true
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
