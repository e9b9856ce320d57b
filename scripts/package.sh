#!/usr/bin/env bash
# Builds the Debian package: target/debian/khoa_VERSION_ARCH.deb (docs/deployment.md).
# Installs cargo-deb when missing; builds the release binary unless --no-build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "package.sh: installing cargo-deb"
  cargo install --locked --quiet cargo-deb
fi
if [ "${1:-}" != "--no-build" ]; then
  cargo build --release -p khoa
fi
cargo deb -p khoa --no-build --no-strip
