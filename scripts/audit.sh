#!/usr/bin/env bash
# Supply chain: `cargo audit` of Cargo.lock against the offline RustSec snapshot in
# ../shared/advisory-db (KHOA_ADVISORY_DB names another bundle or checkout). Installs
# cargo-audit from crates.io when missing. Exceptions live in .cargo/audit.toml, each
# with its reason (docs/security.md lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

source=${KHOA_ADVISORY_DB:-../shared/advisory-db/advisory-db.bundle}
if [ ! -e "$source" ]; then
  echo "audit.sh: no advisory database at $source"
  exit 1
fi
if ! cargo audit --version >/dev/null 2>&1; then
  echo "audit.sh: installing cargo-audit"
  cargo install --locked --quiet cargo-audit
fi
scratch=$(mktemp -d /tmp/khoa-audit.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
git -c init.defaultBranch=main clone -q "$source" "$scratch/advisory-db"
echo "audit.sh: RustSec snapshot of $(git -C "$scratch/advisory-db" log -1 --format=%cI)"
cargo audit --db "$scratch/advisory-db" --no-fetch --stale --deny warnings
