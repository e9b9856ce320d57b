#!/usr/bin/env bash
# Checks khoa's container image (docs/deployment.md): builds it with buildah from this
# repository, checks its configuration (non-root user, HEALTHCHECK, the volume, the
# entrypoint), then runs it: with podman where this machine can run containers, and
# otherwise (no cgroup v2, setrlimit refused: many CI sandboxes) the image's own file
# system, mounted by buildah, in a chroot as its user with its environment. Either
# way khoa serves from the image, writes its master key (0600) in the volume, and the
# image's HEALTHCHECK command answers ready. Needs root; skipped with a message without.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/net.sh
fail() { echo "container-test.sh: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "container-test.sh: not root, so the image was not built"; exit 0; fi
export STORAGE_DRIVER=vfs

image=$(./scripts/container.sh --no-build)
echo "container-test.sh: built $image"
config=$(buildah inspect --type image "$image")
python3 - "$config" <<'PY' || exit 1
import json, sys
c = json.loads(sys.argv[1])["Docker"]["config"]
checks = {
    "runs as uid 10001": c.get("User") == "10001:10001",
    "HEALTHCHECK khoa health": (c.get("Healthcheck") or {}).get("Test") == ["CMD", "/usr/bin/khoa", "health"],
    "volume /var/lib/khoa": "/var/lib/khoa" in (c.get("Volumes") or {}),
    "entrypoint khoa serve": c.get("Entrypoint") == ["/usr/bin/khoa"] and c.get("Cmd") == ["serve"],
}
for what, ok in checks.items():
    print(f"container-test.sh: {what}: {'yes' if ok else 'NO'}")
sys.exit(0 if all(checks.values()) else 1)
PY
env_of_image=$(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])["Docker"]["config"]["Env"]))' "$config")

port=$(free_port)
admin=$(free_port)
scratch=$(mktemp -d)
container=
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ -n "$container" ]; then buildah umount "$container" >/dev/null 2>&1 || true; buildah rm "$container" >/dev/null 2>&1 || true; fi
  podman rm -f khoa-test >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# podman keeps its own image store: the image goes there as an archive.
if ! command -v podman >/dev/null; then
  echo "podman is not installed" >"$scratch/podman.err"
elif buildah push --quiet "$image" "docker-archive:$scratch/image.tar:$image" >/dev/null 2>"$scratch/podman.err" \
  && podman load --quiet -i "$scratch/image.tar" >/dev/null 2>>"$scratch/podman.err" \
  && timeout 60 podman run --rm --pull never --network host "$image" --version >/dev/null 2>>"$scratch/podman.err"; then
  podman run -d --pull never --name khoa-test --network host -e KHOA_LISTEN="127.0.0.1:$port" -e KHOA_ADMIN_LISTEN="127.0.0.1:$admin" "$image" >/dev/null
  for _ in $(seq 1 100); do podman exec khoa-test /usr/bin/khoa health >/dev/null 2>&1 && break; sleep 0.1; done
  podman exec khoa-test /usr/bin/khoa health || fail "the HEALTHCHECK command does not answer ready"
  podman healthcheck run khoa-test || fail "podman healthcheck run failed"
  echo "container-test.sh: podman ran the image; its HEALTHCHECK answers ready"
  exit 0
fi
echo "container-test.sh: podman cannot run containers here ($(tail -n 1 "$scratch/podman.err")); running the image's file system in a chroot instead"
container=$(buildah from "$image")
root=$(buildah mount "$container")
mkdir -p "$scratch/volume" && chown 10001:10001 "$scratch/volume"
mount --bind "$scratch/volume" "$root/var/lib/khoa"
umount_volume() { umount "$root/var/lib/khoa" 2>/dev/null || true; }
trap 'umount_volume; cleanup' EXIT
mapfile -t image_env <<<"$env_of_image"
in_image=(env -i "${image_env[@]}" KHOA_LISTEN="127.0.0.1:$port" KHOA_ADMIN_LISTEN="127.0.0.1:$admin"
  chroot --userspec=10001:10001 "$root")
"${in_image[@]}" /usr/bin/khoa --version
# The entrypoint and command of the image, in its working directory.
"${in_image[@]}" /bin/sh -c true 2>/dev/null && fail "the image has a shell: it should hold khoa alone"
(env -i "${image_env[@]}" KHOA_LISTEN="127.0.0.1:$port" KHOA_ADMIN_LISTEN="127.0.0.1:$admin" \
  chroot --userspec=10001:10001 "$root" /usr/bin/khoa serve) >"$scratch/serve.out" 2>"$scratch/serve.err" &
pid=$!
for _ in $(seq 1 100); do "${in_image[@]}" /usr/bin/khoa health >/dev/null 2>&1 && break; sleep 0.1; done
"${in_image[@]}" /usr/bin/khoa health || { cat "$scratch/serve.err"; fail "the HEALTHCHECK command does not answer ready"; }
[ "$(stat -c '%u %a' "$scratch/volume/khoa.key")" = "10001 600" ] || fail "the master key in the volume is $(stat -c '%u %a' "$scratch/volume/khoa.key")"
python3 -c 'import json, sys, urllib.request; json.load(urllib.request.urlopen(sys.argv[1], timeout=5))["issuer"]' \
  "http://127.0.0.1:$port/.well-known/openid-configuration" || fail "discovery does not answer"
echo "container-test.sh: the image's file system serves as uid 10001 (libraries, CA certificates, user complete); master key 0600 in the volume; HEALTHCHECK answers ready"
