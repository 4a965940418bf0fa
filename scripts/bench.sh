#!/usr/bin/env bash
# Runs weft's benchmarks and writes docs/benchmarks.md. Run as root, on a host that is
# otherwise quiet: the figures are only as steady as the machine. Everything runs in network
# namespaces the benchmark creates; the host's own network is left alone.
#
#   scripts/bench.sh                 # everything (about ten minutes on 2 cores)
#   scripts/bench.sh control         # one section: control, scale, datapath or boot
#   scripts/bench.sh all --quick     # fewer rounds, to check that it all works
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ $EUID -eq 0 ]] || { echo "bench.sh: run as root (it creates namespaces and TAP devices)" >&2; exit 1; }

# nftables brings libnftables1, which weftd calls in process; busybox is the netns guests'
# app; QEMU boots the base image for the boot section.
packages=(nftables libnftables1 iproute2 busybox-static qemu-system-x86 procps)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bench.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -f image/out/base/kernel && -f image/out/base/initrd ]] || image/build.sh

cargo build --release --workspace --bins
# A thousand guests hold a few descriptors each in weftd.
ulimit -n "$(ulimit -Hn)"
echo "bench.sh: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
exec target/release/weft-bench "${@:-all}"
