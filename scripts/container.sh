#!/usr/bin/env bash
# Builds khoa's container image with buildah, from this repository alone
# (packaging/Containerfile, FROM scratch): prints the image name. --no-build uses the
# release binary already built. Installs buildah (Debian) when missing and root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v buildah >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y buildah >/dev/null; else echo "container.sh: buildah is missing" >&2; exit 1; fi
fi
[ "${1:-}" = "--no-build" ] || cargo build --release -p khoa
version=$(target/release/khoa --version | awk '{print $2}')
context=target/container
rm -rf "$context"
root="$context/rootfs"
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/var/lib/khoa"
install -m 0755 target/release/khoa "$root/usr/bin/khoa"
# The shared libraries the binary links (glibc and its loader), at their own paths.
for lib in $(ldd target/release/khoa | grep -oE '/[^ ]+'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nkhoa:x:10001:10001:khoa:/var/lib/khoa:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nkhoa:x:10001:\n' >"$root/etc/group"
cp packaging/Containerfile "$context/Containerfile"
# vfs storage and chroot isolation: no overlay mounts or namespaces needed to build.
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
buildah bud --quiet --format docker --isolation chroot --layers=false \
  -f "$context/Containerfile" -t "localhost/khoa:$version" "$context" >/dev/null
echo "localhost/khoa:$version"
