#!/usr/bin/env bash
# Runs every check and every test of tokenfn. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "build the tokenfn binary the black-box tests run"
cargo build -p tokenfn

step "tests"
cargo test --workspace
