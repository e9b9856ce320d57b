#!/usr/bin/env bash
# Starts khoa and the demo relying party (examples/demo-rp) with a demo client and a
# demo user, in a temporary folder, and prints the URL to open. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p khoa -p khoa-demo-rp
bin=$PWD/target/release
work=$(mktemp -d /tmp/khoa-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
cd "$work"
export KHOA_LOG=warn
app=http://127.0.0.1:3000
secret=$("$bin/khoa" client create --id demo --name "Demo app" \
  --redirect-uri "$app/callback" --post-logout-redirect-uri "$app/" \
  --frontchannel-logout-uri "$app/frontchannel-logout" | sed -E 's/.*"client_secret":"([^"]+)".*/\1/')
printf 'demo-password' | "$bin/khoa" user create --username demo --password-stdin \
  --name "Nguyễn Văn Demo" --email demo@example.vn >/dev/null
"$bin/khoa" serve >/dev/null &
until curl -sf http://localhost:8080/health/ready >/dev/null; do sleep 0.2; done
DEMO_ISSUER=http://localhost:8080 DEMO_CLIENT_ID=demo DEMO_CLIENT_SECRET="$secret" \
  DEMO_LISTEN=127.0.0.1:3000 DEMO_BASE_URL=$app "$bin/khoa-demo-rp" >/dev/null &
until curl -sf "$app/" >/dev/null; do sleep 0.2; done
echo "khoa:     http://localhost:8080"
echo "demo app: $app   (sign in as demo / demo-password)"
echo "Ctrl-C stops both."
wait
