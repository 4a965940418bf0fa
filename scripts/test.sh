#!/usr/bin/env bash
# Runs weft's tests: unit tests, privileged tests in network namespaces they create, and the
# end-to-end tests with real QEMU guests. Run as root. Builds the guest image when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ $EUID -eq 0 ]] || { echo "test.sh: run as root (tests create namespaces and TAP devices)" >&2; exit 1; }
scripts/install-deps.sh
[[ -f image/out/base/kernel && -f image/out/base/initrd ]] || image/build.sh

# The netns driver runs weft-netns and weft-guest from beside weftd.
cargo build --workspace --bins
cargo nextest run --workspace "$@"
