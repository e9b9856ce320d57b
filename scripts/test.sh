#!/usr/bin/env bash
# Runs every khoa test, on SQLite and on PostgreSQL.
#
# Starts a throwaway PostgreSQL cluster (installing Debian's postgresql package when it
# is missing), owned by a non-root user, in a temporary folder, listening on 127.0.0.1
# on a free port; runs `cargo test` (every workspace member) against it; removes it afterwards.
# Extra arguments go to cargo test (e.g. `./scripts/test.sh -p khoa-store`).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

PGBIN=$(pg_bindir)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "test.sh: installing PostgreSQL (Debian package postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PGBIN=$(pg_bindir)
fi

# Browser tests drive Debian's Chromium through ChromeDriver.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "test.sh: installing chromium and chromium-driver (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Browser apps' client libraries, pinned in tests/js: oidc-client-ts (driven in
# Chromium) and openid-client (form_post), from the npm registry.
if [ ! -d tests/js/node_modules/oidc-client-ts ] || [ ! -d tests/js/node_modules/openid-client ]; then
  echo "test.sh: installing the npm packages of tests/js"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# The TCONNECT examples of docs/dialects.md run in the tests: Python needs cryptography.
if command -v python3 >/dev/null && ! python3 -c 'import cryptography' 2>/dev/null; then
  echo "test.sh: installing the Python package cryptography"
  python3 -m pip install --quiet cryptography || as_root python3 -m pip install --quiet cryptography
fi

# PostgreSQL refuses to run as root: use an unprivileged account.
if [ "$(id -u)" = 0 ]; then
  PGUSER_OS=postgres
  id "$PGUSER_OS" >/dev/null 2>&1 || useradd --system --no-create-home "$PGUSER_OS"
  run_pg() { runuser -u "$PGUSER_OS" -- "$@"; }
else
  PGUSER_OS=$(id -un)
  run_pg() { "$@"; }
fi

PGDIR=$(mktemp -d /tmp/khoa-pg.XXXXXX)
chmod 755 "$PGDIR"
chown "$PGUSER_OS" "$PGDIR"
cleanup() {
  run_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
trap cleanup EXIT INT TERM

run_pg "$PGBIN/initdb" -D "$PGDIR/data" -U khoa -A trust --no-sync >"$PGDIR/initdb.log" 2>&1 \
  || { cat "$PGDIR/initdb.log"; exit 1; }

started=""
for _ in 1 2 3 4 5 6 7 8; do
  PGPORT=$((20000 + RANDOM % 20000))
  if run_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
      start >/dev/null 2>&1; then
    started=yes
    break
  fi
done
[ -n "$started" ] || { echo "test.sh: PostgreSQL did not start"; cat "$PGDIR/server.log"; exit 1; }

export KHOA_TEST_POSTGRES_URL="postgres://khoa@127.0.0.1:$PGPORT/postgres"
echo "test.sh: throwaway PostgreSQL at 127.0.0.1:$PGPORT"

# Totals over every test binary, as the last line (cargo's own last line is often a
# doc-test run with nothing in it).
# The workspace's default member is the server (so that `cargo run` at the root runs
# it): without a package named, test every member.
scope=(--workspace)
for a in "$@"; do
  case "$a" in -p | -p* | --package | --package=* | --workspace) scope=() ;; esac
done
set +e
cargo test "${scope[@]}" "$@" 2>&1 | tee "$PGDIR/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
totals=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$PGDIR/cargo-test.log" \
  | awk '{p += $1; f += $2} END {print p + 0, f + 0}')
echo "tests: ${totals% *} passed, ${totals#* } failed"

if [ $# -eq 0 ] && [ "$status" = 0 ]; then
  # The README's first command, literally, with --version in place of serve.
  first=$(sed -n 's/^cargo run --release -- serve .*/cargo run --release -- serve/p' README.md | head -n 1)
  if [ "$first" != "cargo run --release -- serve" ]; then
    echo "test.sh: README.md no longer opens with 'cargo run --release -- serve'"; status=1
  else
    echo "test.sh: ${first% serve} --version"
    ${first% serve} --version || status=$?
  fi
fi

# Supply chain: cargo audit against the offline RustSec snapshot in ../shared.
if [ $# -eq 0 ] && [ "$status" = 0 ]; then
  ./scripts/audit.sh || status=$?
fi

# A full run also runs each fuzz target for a few seconds from the committed corpus
# (nightly Rust and cargo-fuzz; cargo test has replayed the corpus on stable already).
if [ $# -eq 0 ] && [ "$status" = 0 ] && [ "${KHOA_SKIP_FUZZ:-}" != 1 ]; then
  if cargo +nightly --version >/dev/null 2>&1; then
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
      echo "test.sh: installing cargo-fuzz"
      cargo install --locked --quiet cargo-fuzz
    fi
    KHOA_FUZZ_SCRATCH=1 ./scripts/fuzz.sh 5 || status=$?
  else
    echo "test.sh: no nightly Rust here, so the fuzz targets did not run (their corpus was replayed)"
  fi
fi
exit "$status"
