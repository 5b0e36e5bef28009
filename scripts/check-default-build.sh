#!/usr/bin/env bash
# Builds the README's first command's binary (the default `infrakit`) the way a new machine
# would: from an empty target directory, with no `protoc` reachable, so a dependency that needs
# a system package in the default build fails here rather than on a new user's machine.
set -euo pipefail
cd "$(dirname "$0")/.."

target=$(mktemp -d "${TMPDIR:-/tmp}/infrakit-default-build.XXXXXX")
trap 'rm -rf "$target"' EXIT

# No crate of the default build may generate code with protoc.
if cargo tree -p infrakit --locked -e normal,build --prefix none | grep -E '^(etcd-client|prost-build|tonic-build|tonic-prost-build) '; then
  echo "check-default-build: the default infrakit build depends on a crate that needs protoc" >&2
  exit 1
fi

build=(env PROTOC=/nonexistent/protoc PROTOC_INCLUDE=/nonexistent CARGO_TARGET_DIR="$target"
  cargo build -p infrakit --locked)
protoc=$(command -v protoc || true)
if [ -n "$protoc" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  # Hide the installed protoc from this build only (a private mount namespace).
  empty="$target/no-protoc"
  : >"$empty"
  unshare --mount sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$empty" "$(readlink -f "$protoc")" "${build[@]}"
elif [ -n "$protoc" ]; then
  echo "check-default-build: $protoc stays reachable (not root); PROTOC points nowhere" >&2
  "${build[@]}"
else
  "${build[@]}"
fi
echo "check-default-build: the default binary builds without protoc"
