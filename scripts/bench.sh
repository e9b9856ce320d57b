#!/usr/bin/env bash
# Throughput benchmark (docs/benchmarks.md). Builds khoa in release mode and runs
# `khoa-bench run`, which starts khoa on fresh SQLite databases on loopback.
#
#   scripts/bench.sh [SECONDS] [CONCURRENCY] [CHART.svg] [--alg ES256] [--opaque] [--peer] [--postgres]
#
# --peer installs node-oidc-provider and ioredis from npm into a temporary folder and
# runs the same scenarios against two set-ups of it on loopback (bench/peer/server.mjs):
# one Node.js process with its store in memory, and one process per core (Node.js
# cluster) over a Redis store, which several processes need (Debian's redis-server,
# installed when missing). khoa then runs twice: JWT access tokens, and opaque ones
# like the peer's. Ratios are to the faster set-up of each scenario.
#
# --postgres also runs khoa on a throwaway PostgreSQL cluster with its default
# durability (fsync and synchronous_commit on).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/net.sh

args=()
peer=false
postgres=false
for a in "$@"; do
    case "$a" in
        --peer) peer=true ;;
        --postgres) postgres=true ;;
        *) args+=("$a") ;;
    esac
done

cargo build --release -q -p khoa -p khoa-bench

dir="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_throwaway_postgres
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM


wait_for() {
    for _ in $(seq 100); do
        curl -fs "$1" >/dev/null && return 0
        sleep 0.1
    done
    echo "bench.sh: $1 did not answer" >&2
    exit 1
}

if $postgres; then
    start_throwaway_postgres bench.sh "-c max_connections=200"
    args+=(--postgres "$POSTGRES_URL")
fi

if $peer; then
    command -v node >/dev/null || { echo "--peer needs Node.js (apt-get install -y nodejs npm)" >&2; exit 1; }
    if ! command -v redis-server >/dev/null; then
        echo "bench.sh: installing redis-server (Debian package)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    (cd "$dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund oidc-provider@9 ioredis@5 >/dev/null)
    cp bench/peer/server.mjs "$dir/"
    export BENCH_SECRET="peer-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export BENCH_M2M_SECRET="peer-m2m-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export BENCH_CALLBACK="http://127.0.0.1:9/cb"
    # Redis as a cache of live state: in memory, no snapshots, no append-only file.
    redis_port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    one="$(free_port)"
    (cd "$dir" && NODE_ENV=production PORT="$one" exec node server.mjs >"$dir/peer-one.log" 2>&1) &
    one_pid=$!
    pids+=("$one_pid")
    cluster="$(free_port)"
    (cd "$dir" && NODE_ENV=production PORT="$cluster" PEER_WORKERS="$(nproc)" \
        REDIS_URL="redis://127.0.0.1:$redis_port" exec node server.mjs >"$dir/peer-cluster.log" 2>&1) &
    cluster_pid=$!
    pids+=("$cluster_pid")
    wait_for "http://127.0.0.1:$one/.well-known/openid-configuration"
    wait_for "http://127.0.0.1:$cluster/.well-known/openid-configuration"
    echo "node-oidc-provider $(node -p "require('$dir/node_modules/oidc-provider/package.json').version") on Node.js $(node --version), $(redis-server --version | cut -d' ' -f1-3)"
    # The CPU time of each set-up: its processes and their descendants (the cluster's
    # workers), and for the cluster the Redis server too.
    export KHOA_BENCH_PEER_PIDS="$one_pid;$cluster_pid,$redis_pid"
    args+=(--peer "one process, memory=http://127.0.0.1:$one")
    args+=(--peer "$(nproc) processes, Redis=http://127.0.0.1:$cluster")
fi

target/release/khoa-bench run "${args[@]}"
