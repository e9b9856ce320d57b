# Sourced by scripts/test.sh and scripts/bench.sh: a throwaway PostgreSQL cluster,
# owned by a non-root user, in a temporary folder, on 127.0.0.1 and a free port.
#
#   start_throwaway_postgres TAG "SERVER OPTIONS"
#
# installs Debian's postgresql package when it is missing, sets PGDIR, PGPORT and
# POSTGRES_URL, and stop_throwaway_postgres removes it again.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

start_throwaway_postgres() {
  local tag=$1 options=$2
  PGBIN=$(pg_bindir)
  if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "$tag: installing PostgreSQL (Debian package postgresql)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PGBIN=$(pg_bindir)
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
  run_pg "$PGBIN/initdb" -D "$PGDIR/data" -U khoa -A trust --no-sync >"$PGDIR/initdb.log" 2>&1 \
    || { cat "$PGDIR/initdb.log"; return 1; }
  local started=""
  for _ in 1 2 3 4 5 6 7 8; do
    PGPORT=$((20000 + RANDOM % 20000))
    if run_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR $options" start >/dev/null 2>&1; then
      started=yes
      break
    fi
  done
  [ -n "$started" ] || { echo "$tag: PostgreSQL did not start"; cat "$PGDIR/server.log"; return 1; }
  POSTGRES_URL="postgres://khoa@127.0.0.1:$PGPORT/postgres"
  echo "$tag: throwaway PostgreSQL at 127.0.0.1:$PGPORT"
}

stop_throwaway_postgres() {
  [ -n "${PGDIR:-}" ] || return 0
  run_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
