#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine. The process-target
# tests need only the Rust toolchain; Docker images, Redis and PostgreSQL will
# be installed here when the tests that use them land.
set -euo pipefail
command -v cargo >/dev/null || { echo "ci/install-deps.sh: cargo is required" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true
