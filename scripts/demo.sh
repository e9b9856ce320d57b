#!/usr/bin/env bash
# Starts khoa, the demo relying party (examples/demo-rp) and the single-page app
# (examples/spa, on oidc-client-ts from npm), with their clients and a demo user, in a
# temporary folder, and prints the URLs to open. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cargo build --release -q -p khoa -p khoa-demo-rp
if [ ! -d tests/js/node_modules/oidc-client-ts ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
bin=$PWD/target/release
work=$(mktemp -d /tmp/khoa-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
cd "$work"
export KHOA_LOG=warn
app=http://127.0.0.1:3000
spa=http://127.0.0.1:3001
secret=$("$bin/khoa" client create --id demo --name "Demo app" \
  --redirect-uri "$app/callback" --post-logout-redirect-uri "$app/" \
  --frontchannel-logout-uri "$app/frontchannel-logout" | sed -E 's/.*"client_secret":"([^"]+)".*/\1/')
"$bin/khoa" client create --id spa --name "Single-page app" --public --skip-consent --always-issue-refresh-token \
  --redirect-uri "$spa/callback.html" --redirect-uri "$spa/silent.html" \
  --post-logout-redirect-uri "$spa/?signed-out" >/dev/null
printf 'demo-password' | "$bin/khoa" user create --username demo --password-stdin \
  --name "Nguyễn Văn Demo" --email demo@example.vn >/dev/null
"$bin/khoa" serve >/dev/null &
until curl -sf http://localhost:8080/health/ready >/dev/null; do sleep 0.2; done
DEMO_ISSUER=http://localhost:8080 DEMO_CLIENT_ID=demo DEMO_CLIENT_SECRET="$secret" \
  DEMO_LISTEN=127.0.0.1:3000 DEMO_BASE_URL=$app "$bin/khoa-demo-rp" >/dev/null &
# The single-page app: static files, with its configuration and oidc-client-ts beside them.
mkdir -p spa/vendor
cp "$root"/examples/spa/*.html "$root"/examples/spa/*.js "$root"/examples/spa/*.css spa/
cp "$root/tests/js/node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js" spa/vendor/
echo 'window.KHOA_SPA = { issuer: "http://localhost:8080", client_id: "spa" };' > spa/config.js
python3 -m http.server 3001 --bind 127.0.0.1 --directory spa >/dev/null 2>&1 &
until curl -sf "$app/" >/dev/null && curl -sf "$spa/" >/dev/null; do sleep 0.2; done
echo "khoa:            http://localhost:8080"
echo "demo app:        $app   (sign in as demo / demo-password)"
echo "single-page app: $spa"
echo "Ctrl-C stops everything."
wait
