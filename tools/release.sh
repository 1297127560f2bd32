#!/usr/bin/env bash
# Release archives, one command (issue #19): in dist/,
#   pfgate-VERSION-x86_64-pc-windows-gnu.zip
#   pfgate-VERSION-x86_64-unknown-linux-gnu.tar.gz
#   pfgate-VERSION-x86_64-unknown-linux-musl.tar.gz   (fully static; skipped, and said so, if the
#                                                      musl target or musl-gcc is missing)
# each holding the binary, README.md, the licences (LICENSE-MIT, LICENSE-APACHE when present),
# pfgate.example.toml, docs/deploy.md, the deployment files of its platform (deploy/pfgate.service;
# deploy/iis/ for Windows) and SHA256SUMS of those files; dist/SHA256SUMS covers the archives.
# Each archive is then unpacked in a scratch directory and its binary must print
# "pfgate VERSION" (the Windows one under wine, with the test-only ProcessPrng shim placed in the
# scratch directory, never in the archive).
#
# Usage: tools/release.sh [TARGET...]          (default: the three targets above)
#   PFGATE_RELEASE_PROFILE=dev  package the debug builds instead (what .ci/windows does on every
#                               run: it proves the packaging and the version check without three
#                               release builds, which take ~10 minutes each on a 2-core machine).
# Needs: rustup targets, gcc-mingw-w64-x86-64, musl-tools, zip, wine64 (for the check).
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${PFGATE_RELEASE_PROFILE:-release}"
case "$profile" in
  release) cargo_profile=(--release); out_dir=release ;;
  dev) cargo_profile=(); out_dir=debug ;;
  *) echo "PFGATE_RELEASE_PROFILE must be release or dev" >&2; exit 2 ;;
esac
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(x86_64-unknown-linux-gnu x86_64-pc-windows-gnu x86_64-unknown-linux-musl)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
dist="$PWD/dist"
mkdir -p "$dist"
WINE="${WINE:-$(command -v wine || command -v wine64 || echo /usr/lib/wine/wine64)}"
made=()

# The files every archive carries besides the binary.
common_files() {
  local stage=$1
  cp README.md pfgate.example.toml "$stage/"
  for l in LICENSE-MIT LICENSE-APACHE LICENSE; do [[ -f $l ]] && cp "$l" "$stage/"; done
  mkdir -p "$stage/docs"
  cp docs/deploy.md "$stage/docs/"
}

# Builds TARGET, stages its files, writes the archive; returns 1 when the target cannot be built.
package() {
  local target=$1 exe=pfgate name="pfgate-$version-$1"
  [[ $target == *windows* ]] && exe=pfgate.exe
  if [[ $target == *musl* ]] && ! command -v musl-gcc >/dev/null; then
    echo "== $target: skipped (musl-gcc missing: apt-get install musl-tools)"; return 1
  fi
  # The host's own target builds into target/<profile> (shared with `cargo build`/`cargo test`).
  local target_args=(--target "$target") built="target/$target/$out_dir/$exe"
  if [[ $target == "$(rustc -vV | sed -n 's/^host: //p')" ]]; then
    target_args=(); built="target/$out_dir/$exe"
  fi
  echo "== $target: cargo build ${cargo_profile[*]:-(dev)}"
  if ! cargo build --locked "${cargo_profile[@]}" "${target_args[@]}" --bin pfgate; then
    echo "== $target: does not build; no archive"; return 1
  fi
  local stage
  stage=$(mktemp -d)/$name
  mkdir -p "$stage"
  cp "$built" "$stage/"
  common_files "$stage"
  if [[ $target == *windows* ]]; then
    mkdir -p "$stage/deploy/iis" && cp deploy/iis/web.config deploy/iis/pfgate.toml "$stage/deploy/iis/"
    cp docs/iis.md "$stage/docs/"
  else
    mkdir -p "$stage/deploy" && cp deploy/pfgate.service "$stage/deploy/"
  fi
  (cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum > SHA256SUMS)
  rm -f "$dist/$name.zip" "$dist/$name.tar.gz"
  if [[ $target == *windows* ]]; then
    (cd "$(dirname "$stage")" && zip -qr -X "$dist/$name.zip" "$name")
    made+=("$name.zip")
  else
    tar -C "$(dirname "$stage")" --owner=0 --group=0 --sort=name -czf "$dist/$name.tar.gz" "$name"
    made+=("$name.tar.gz")
  fi
  rm -rf "$(dirname "$stage")"
}

# Unpacks ARCHIVE in a scratch directory, checks SHA256SUMS and that the binary prints its version.
check() {
  local archive=$1 scratch got
  scratch=$(mktemp -d)
  case $archive in
    *.zip) unzip -q "$dist/$archive" -d "$scratch" ;;
    *) tar -C "$scratch" -xzf "$dist/$archive" ;;
  esac
  local dir="$scratch/${archive%.zip}"; dir="${dir%.tar.gz}"
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS)
  for f in README.md pfgate.example.toml docs/deploy.md; do [[ -f "$dir/$f" ]] || { echo "$archive: no $f" >&2; exit 1; }; done
  if [[ $archive == *windows* ]]; then
    [[ ! -e "$dir/bcryptprimitives.dll" ]] || { echo "$archive: the test shim must not ship" >&2; exit 1; }
    # wine 8 only: the ProcessPrng shim beside the exe, in the scratch copy (tests/windows/).
    x86_64-w64-mingw32-gcc -shared -O2 -o "$dir/bcryptprimitives.dll" tests/windows/processprng_shim.c -ladvapi32
    got=$(WINEDEBUG=-all WINEDLLOVERRIDES="bcryptprimitives=n,b;mscoree,mshtml=" \
          WINEPREFIX="${WINEPREFIX:-$PWD/target/wine-prefix}" "$WINE" "$dir/pfgate.exe" --version | tr -d '\r')
  else
    got=$("$dir/pfgate" --version)
    # ldd says "statically linked" (static-pie) or "not a dynamic executable"; anything else lists
    # shared libraries the binary would need.
    if [[ $archive == *musl* ]] && ! ldd "$dir/pfgate" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
      echo "$archive: the musl binary is not static" >&2; exit 1
    fi
  fi
  [[ "$got" == "pfgate $version" ]] || { echo "$archive: prints '$got', not 'pfgate $version'" >&2; exit 1; }
  echo "   $archive: SHA256SUMS ok, prints '$got'"
  rm -rf "$scratch"
}

for t in "${targets[@]}"; do package "$t" || true; done
[[ ${#made[@]} -gt 0 ]] || { echo "no archive was made" >&2; exit 1; }
(cd "$dist" && sha256sum "${made[@]}" > SHA256SUMS)
echo "== checking"
for a in "${made[@]}"; do check "$a"; done
echo "== dist/: ${made[*]} SHA256SUMS"
