#!/usr/bin/env bash
# Throughput benchmark (docs/benchmarks.md). Builds khoa in release mode and runs
# `khoa-bench run`, which starts khoa on fresh SQLite databases on loopback.
#
#   scripts/bench.sh [SECONDS] [CONCURRENCY] [CHART.svg] [--alg ES256] [--opaque] [--peer]
#
# --peer installs node-oidc-provider from npm into a temporary folder, starts it on
# loopback with bench/peer/server.mjs, and runs the same scenarios against it in the
# same run (khoa then runs twice: JWT access tokens, and opaque ones like the peer's).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
peer=false
for a in "$@"; do
    if [[ "$a" == "--peer" ]]; then peer=true; else args+=("$a"); fi
done

cargo build --release -q -p khoa -p khoa-bench

if ! $peer; then
    exec target/release/khoa-bench run "${args[@]}"
fi

command -v node >/dev/null || { echo "--peer needs Node.js (apt-get install -y nodejs npm)" >&2; exit 1; }
dir="$(mktemp -d)"
peer_pid=""
cleanup() {
    [[ -n "$peer_pid" ]] && kill "$peer_pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
(cd "$dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund oidc-provider@9 >/dev/null)
cp bench/peer/server.mjs "$dir/"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export BENCH_SECRET="peer-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_M2M_SECRET="peer-m2m-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_CALLBACK="http://127.0.0.1:9/cb"
(cd "$dir" && NODE_ENV=production PORT="$port" exec node server.mjs >"$dir/peer.log" 2>&1) &
peer_pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/.well-known/openid-configuration" >/dev/null && break
    sleep 0.1
done
echo "node-oidc-provider $(node -p "require('$dir/node_modules/oidc-provider/package.json').version") on Node.js $(node --version), port $port"
KHOA_BENCH_PEER_PID="$peer_pid" target/release/khoa-bench run "${args[@]}" --peer "http://127.0.0.1:$port"
