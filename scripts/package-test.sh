#!/usr/bin/env bash
# Checks the Debian package (docs/deployment.md): its files and fields, the unit
# (systemd-analyze verify, and its exposure by systemd-analyze security), then
# installs it with dpkg on this machine, starts khoa as the unit would (user khoa,
# /etc/khoa/khoa.toml, /var/lib/khoa), checks the master key was generated with mode
# 0600 and that the service answers, and purges the package. Needs root for the
# install; without it, or when a khoa package is installed already, the install part
# is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/net.sh

fail() { echo "package-test.sh: $*" >&2; exit 1; }

./scripts/package.sh --no-build
deb=$(ls -t target/debian/khoa_*.deb | head -n 1)
echo "package-test.sh: $deb"

contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/khoa ./etc/khoa/khoa.toml ./usr/lib/systemd/system/khoa.service ./usr/share/doc/khoa/deployment.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
dpkg-deb -f "$deb" Depends | grep -q adduser || fail "the package does not depend on adduser"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -e "$deb" "$scratch/DEBIAN"
grep -qx /etc/khoa/khoa.toml "$scratch/DEBIAN/conffiles" || fail "/etc/khoa/khoa.toml is not a conffile"
dpkg-deb -x "$deb" "$scratch/root"
unit="$scratch/root/usr/lib/systemd/system/khoa.service"
for setting in 'User=khoa' 'StateDirectory=khoa' 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
  'SystemCallFilter=@system-service' 'CapabilityBoundingSet=$'; do
  grep -q "^$setting" "$unit" || fail "the unit lacks $setting"
done

if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze is missing (Debian's systemd package)"
fi
# verify checks the unit's syntax, every directive and that ExecStart's binary exists:
# here with the packaged binary's path in the extracted tree, after the install (as
# root) the installed unit as it is.
verify() {
  local out
  out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$1" 2>&1) || { echo "$out"; fail "systemd-analyze verify refused $1"; }
  if grep -Eiq 'unknown|invalid|fail|error|ignoring' <<<"$out"; then
    echo "$out"; fail "systemd-analyze verify found problems in $1"
  fi
  echo "package-test.sh: systemd-analyze verify $1: no problems"
}
sed "s|/usr/bin/khoa|$scratch/root/usr/bin/khoa|g" "$unit" >"$scratch/khoa.service"
verify "$scratch/khoa.service"
systemd-analyze security --offline=true "$scratch/khoa.service" 2>/dev/null | tail -n 1 || true

if [ "$(id -u)" != 0 ]; then
  echo "package-test.sh: not root, so the package was checked but not installed"; exit 0
fi
if dpkg -s khoa >/dev/null 2>&1; then
  echo "package-test.sh: a khoa package is installed here already, so this one was not installed"; exit 0
fi
if ! command -v adduser >/dev/null; then
  apt-get install -y adduser >/dev/null
fi
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  dpkg --purge khoa >/dev/null 2>&1 || true
  rm -rf /var/lib/khoa
  getent passwd khoa >/dev/null && deluser --system khoa >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
dpkg -i "$deb"
verify /usr/lib/systemd/system/khoa.service
getent passwd khoa >/dev/null || fail "no khoa user after install"
[ "$(stat -c '%U %a' /var/lib/khoa)" = "khoa 700" ] || fail "/var/lib/khoa is $(stat -c '%U %a' /var/lib/khoa)"
[ "$(stat -c '%U:%G %a' /etc/khoa/khoa.toml)" = "root:khoa 640" ] || fail "/etc/khoa/khoa.toml is $(stat -c '%U:%G %a' /etc/khoa/khoa.toml)"
port=$(free_port)
admin=$(free_port)
as_khoa=(runuser -u khoa -- env -i PATH=/usr/bin:/bin KHOA_CONFIG=/etc/khoa/khoa.toml
  KHOA_LISTEN="127.0.0.1:$port" KHOA_ADMIN_LISTEN="127.0.0.1:$admin")
(cd /var/lib/khoa && "${as_khoa[@]}" /usr/bin/khoa config check >/dev/null) || fail "config check refused the packaged settings"
(cd /var/lib/khoa && exec "${as_khoa[@]}" /usr/bin/khoa serve) >"$scratch/serve.out" 2>"$scratch/serve.err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "khoa listening on" "$scratch/serve.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "khoa listening on" "$scratch/serve.out" || { cat "$scratch/serve.err"; fail "khoa serve did not start"; }
(cd /var/lib/khoa && "${as_khoa[@]}" /usr/bin/khoa health) || fail "khoa health: not ready"
[ "$(stat -c '%U %a' /var/lib/khoa/khoa.key)" = "khoa 600" ] || fail "the master key is $(stat -c '%U %a' /var/lib/khoa/khoa.key)"
[ "$(stat -c '%U %a' /var/lib/khoa/khoa.db)" = "khoa 600" ] || fail "the database is $(stat -c '%U %a' /var/lib/khoa/khoa.db)"
(cd /var/lib/khoa && "${as_khoa[@]}" /usr/bin/khoa client list >/dev/null) || fail "the command line cannot use the service's database"
echo "package-test.sh: installed, started as khoa with /etc/khoa/khoa.toml, ready; master key and database mode 0600"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
dpkg --purge khoa >/dev/null
[ ! -e /etc/khoa/khoa.toml ] || fail "purge left /etc/khoa/khoa.toml"
[ -e /var/lib/khoa/khoa.db ] || fail "purge removed the database"
echo "package-test.sh: purged; /var/lib/khoa kept"
