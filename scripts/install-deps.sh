#!/usr/bin/env bash
# Installs the Debian packages weft needs to build, run and test on this host. Idempotent.
set -euo pipefail

packages=(
    qemu-system-x86      # the qemu driver
    nftables             # weft's own nftables table (through `nft -j`)
    iproute2             # only the demo and the tests use `ip`, to build their namespaces
    busybox-static cpio gzip file kmod   # the guest image
    curl jq iputils-ping sqlite3 procps     # the demo's and tests' checks
    ca-certificates
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-nextest"
    cargo install --locked cargo-nextest
fi
