#!/usr/bin/env bash
# Runs orch's benchmark suite (bench/, method in BENCHMARKS.md) against the
# servers in bin/ (`make build`) and etcd from Debian (`scripts/deps.sh bench`).
# Arguments go to orch-bench, e.g.
#   scripts/bench.sh -suite write -runs 3
#   scripts/bench.sh -suite list,watch -runs 1
# The summary is printed and kept in bench/results/latest.md, the raw
# figures in bench/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export ORCH_BIN_DIR=$PWD/bin
[[ -x bin/orchd ]] || { echo "bench.sh: bin/orchd missing: run 'make build' first" >&2; exit 1; }
mkdir -p bench/results
(cd bench && go build -o "$ORCH_BIN_DIR/orch-bench" ./cmd/orch-bench)
exec "$ORCH_BIN_DIR/orch-bench" -json bench/results/latest.json -md bench/results/latest.md "$@"
