#!/usr/bin/env bash
# Type-checks the Metal build (engine, CLI and app, tests included) for Apple Silicon macOS from
# Linux: `cargo clippy --target aarch64-apple-darwin --features metal`. Only the Rust is checked:
# the C parts of dependencies (ring, SQLite) would need the macOS SDK, so a stand-in C compiler
# writes empty objects for them. Needs the target's standard library (`rustup target add
# aarch64-apple-darwin`, which this script runs).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx aarch64-apple-darwin || rustup target add aarch64-apple-darwin
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
printf '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && : >"$2"; shift; done\n' >"$shim/cc"
printf '#!/bin/sh\nshift; : >"$1"\n' >"$shim/ar"
chmod +x "$shim/cc" "$shim/ar"
CC_aarch64_apple_darwin=$shim/cc AR_aarch64_apple_darwin=$shim/ar \
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-metal} \
    cargo clippy -p sumi-engine -p sumi-cli -p sumi-app --all-targets --features metal \
    --target aarch64-apple-darwin --locked -- -D warnings
