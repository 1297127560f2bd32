#!/usr/bin/env bash
# Builds the pfgate OCI image without a Docker daemon (podman, i.e. buildah underneath) and
# exports it as an OCI archive.
#
#   tools/image.sh                 # builds the static musl binary first (cargo, release)
#   BIN=path/to/pfgate tools/image.sh   # uses that binary (must be static)
#
# Writes target/image/pfgate-VERSION-oci.tar and tags localhost/pfgate:VERSION in podman's
# storage. Needs podman and the Rust target x86_64-unknown-linux-musl with Debian's musl-tools
# (`rustup target add x86_64-unknown-linux-musl`). docs/container.md.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-target/image}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
source_url="$(git config --get remote.origin.url 2>/dev/null || true)"

if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --target x86_64-unknown-linux-musl
  BIN=target/x86_64-unknown-linux-musl/release/pfgate
fi
if readelf -l "$BIN" | grep -q INTERP; then
  echo "image.sh: $BIN is dynamically linked; the image is FROM scratch and needs a static binary" >&2
  exit 1
fi

ctx="$OUT/context"
rm -rf "$ctx"
root="$ctx/rootfs"
mkdir -p "$root/etc/ssl/certs" "$root/etc/pfgate" "$root/tmp" "$root/var/lib/pfgate" \
  "$root/usr/share/pfgate/fixtures"
printf 'root:x:0:0:root:/:/sbin/nologin\npfgate:x:65532:65532:pfgate:/var/lib/pfgate:/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\npfgate:x:65532:\n' >"$root/etc/group"
# Providers (Duo, Twilio, webhooks, the OIDC issuer) are reached over HTTPS with the system roots.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp fixtures/demo.toml fixtures/mock-*.toml "$root/usr/share/pfgate/fixtures/"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/pfgate"
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 "$root/var/lib/pfgate"
else
  podman unshare chown 65532:65532 "$root/var/lib/pfgate"
fi
# The image carries no debug information (a stripped copy; the binary built above is untouched).
strip -o "$ctx/pfgate" "$BIN"

tag="localhost/pfgate:$version"
# Docker's image format keeps the HEALTHCHECK (the OCI image format has no field for it) for a
# `podman push --format v2s2` to a registry Docker pulls from; the OCI archive below is for OCI
# runtimes (runc, containerd), which take health checks from their own configuration.
podman build --quiet --format docker \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source_url" \
  -t "$tag" -f deploy/container/Containerfile "$ctx" >/dev/null
archive="$OUT/pfgate-$version-oci.tar"
rm -f "$archive"
podman save --quiet --format oci-archive -o "$archive" "$tag"
size="$(podman image inspect --format '{{.Size}}' "$tag")"
echo "image.sh: $tag, $((size / 1024)) KiB unpacked; OCI archive $archive ($(($(stat -c %s "$archive") / 1024)) KiB)"
