#!/usr/bin/env bash
# Measures khoa's start-up: time from exec to "khoa listening on" (first start on an
# empty folder, then restarts on the existing database) and resident memory when idle.
# Usage: ./scripts/startup-bench.sh [RUNS]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-21}
cargo build --release -p khoa -q
bin=$PWD/target/release/khoa
work=$(mktemp -d)
trap 'pkill -f "$work" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cd "$work"

start_once() { # sets ms (exec to readiness) and pid; leaves the server running
  local t0 t1
  t0=$(date +%s%N)
  rm -f out.txt
  KHOA_ADMIN_LISTEN=127.0.0.1:0 "$bin" serve > out.txt 2> err.txt &
  pid=$!
  until grep -q "khoa listening on" out.txt 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat err.txt; exit 1; }
    sleep 0.001
  done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

export KHOA_LISTEN=127.0.0.1:$((20000 + RANDOM % 20000)) KHOA_LOG=warn
start_once
first=$ms
sleep 1
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
times=()
for _ in $(seq "$runs"); do
  start_once
  times+=("$ms")
  kill -TERM $pid; wait $pid || true
done
echo "first start (creates database, master key, RS256+ES256+EdDSA keys): ${first} ms"
echo "restart on existing database, median of $runs: $(printf '%s\n' "${times[@]}" | median) ms (min $(printf '%s\n' "${times[@]}" | sort -n | head -1), max $(printf '%s\n' "${times[@]}" | sort -n | tail -1))"
echo "idle RSS after start: $((rss / 1024)) MiB ($rss KiB)"
