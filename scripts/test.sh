#!/usr/bin/env bash
# Runs every khoa test, on SQLite and on PostgreSQL.
#
# Starts a throwaway PostgreSQL cluster (installing Debian's postgresql package when it
# is missing), owned by a non-root user, in a temporary folder, listening on 127.0.0.1
# on a free port; runs `cargo test` (every workspace member) against it; removes it afterwards.
# Extra arguments go to cargo test (e.g. `./scripts/test.sh -p khoa-store`).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/postgres.sh

# Browser tests drive Debian's Chromium through ChromeDriver.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "test.sh: installing chromium and chromium-driver (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The reverse-proxy tests run the configurations of docs/deployment.md in Debian's
# nginx and HAProxy; the package and image checks need systemd-analyze, buildah and
# podman (which runs the image where the machine allows containers).
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v buildah >/dev/null || missing+=(buildah)
command -v podman >/dev/null || missing+=(podman)
command -v adduser >/dev/null || missing+=(adduser)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  # Installing a server package must not start it (nor fail where nothing can).
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${missing[@]}" >/dev/null
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

# Mails are received by an SMTP server khoa did not write: Python's aiosmtpd.
if command -v python3 >/dev/null && ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "test.sh: installing the Python package aiosmtpd"
  python3 -m pip install --quiet aiosmtpd || as_root python3 -m pip install --quiet aiosmtpd
fi

# A Python relying party (authlib) signs in with its secret in the request body.
if command -v python3 >/dev/null && ! python3 -c 'import authlib, requests' 2>/dev/null; then
  echo "test.sh: installing the Python packages authlib and requests"
  python3 -m pip install --quiet authlib requests || as_root python3 -m pip install --quiet authlib requests
fi

# The admin API's OpenAPI document is checked by an independent validator.
if command -v python3 >/dev/null && ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  echo "test.sh: installing the Python package openapi-spec-validator"
  python3 -m pip install --quiet openapi-spec-validator || as_root python3 -m pip install --quiet openapi-spec-validator
fi

# CI builds once from a clean clone: incremental caches would only take disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

trap stop_throwaway_postgres EXIT INT TERM
start_throwaway_postgres test.sh \
  "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400"
export KHOA_TEST_POSTGRES_URL="$POSTGRES_URL"

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

if [ $# -eq 0 ] && [ "$status" = 0 ] && [ -n "${CI:-}" ]; then
  # A CI machine's disk may not hold the test build, the release build and the fuzz
  # build at once: the test build has done its work.
  rm -rf target/debug
fi

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

# The Debian package (built from the release binary above, installed, started as its
# unit would, purged) and the container image (docs/deployment.md).
if [ $# -eq 0 ] && [ "$status" = 0 ]; then
  ./scripts/package-test.sh || status=$?
fi
if [ $# -eq 0 ] && [ "$status" = 0 ]; then
  ./scripts/container-test.sh || status=$?
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
