#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time and fails if any of them finds a crash.
#
#   scripts/fuzz.sh [SECONDS]     # per target, default 60
#
# Targets: rpc_dispatch (JSON-RPC parser and dispatcher), spec_parse (group specs in JSON and
# YAML, validated and planned), template_render (the CLI's spec templates, infrakit-template).
# Needs cargo-fuzz (installed from crates.io when missing). With a nightly toolchain the targets
# are built with AddressSanitizer; with only stable, RUSTC_BOOTSTRAP=1 builds them without a
# sanitizer (coverage-guided fuzzing and Rust's own checks still work).
# Seeds are read from fuzz/corpus/<target>/, which is never written to; inputs found during the
# run go to a temporary directory. A crash is saved under fuzz/artifacts/<target>/ and the script
# prints how to replay it.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
  echo "usage: $0 [SECONDS per target]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
TARGETS=(rpc_dispatch spec_parse template_render)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Nightly if there is one (sanitizers need it), else stable without a sanitizer.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
  SANITIZER=(--sanitizer address)
  echo "== nightly toolchain: AddressSanitizer on"
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
  SANITIZER=(--sanitizer none)
  echo "== no nightly toolchain: building on stable with RUSTC_BOOTSTRAP=1, no sanitizer"
fi

started=$(date +%s)
echo "== building ${TARGETS[*]}"
"${FUZZ[@]}" build "${SANITIZER[@]}"
built=$(date +%s)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
  echo "== $t: ${SECONDS_PER_TARGET}s"
  mkdir -p "$work/$t" "artifacts/$t"
  if ! "${FUZZ[@]}" run "${SANITIZER[@]}" "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$work/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 60 "$work/$t.log"
    echo "!! $t failed; replay with: (cd fuzz && ${FUZZ[*]} run $t <artifact>) using:"
    ls -t "artifacts/$t" | head -n 3 | sed "s|^|   fuzz/artifacts/$t/|"
  else
    grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$work/$t.log" | sed 's/^/   /'
  fi
done
finished=$(date +%s)

echo "== build $((built - started))s, fuzzing $((finished - built))s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== no crash in ${TARGETS[*]}"
