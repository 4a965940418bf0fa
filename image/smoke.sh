#!/usr/bin/env bash
# Boots the base image under QEMU (TCG, no KVM needed) inside a network namespace made for
# the test, and checks what weft-guest prints and that the demo app answers:
#
#   1. two NICs: eth0 configured (10.100.0.2/16, gateway and DNS 10.100.255.254), eth1 with
#      autoconfig off; busybox httpd as the app, reached with ping and HTTP from the namespace.
#   2. no NIC: a shell app that prints an env.vars variable and exits 3; the VM must power
#      itself off and hand the exit code to QEMU's isa-debug-exit device (QEMU exits 7).
#   3. three NICs in one network, as pool interfaces are: every address must answer ping and
#      HTTP through its own TAP while the namespace drops packets whose source address
#      arrives on another TAP (the host's anti-spoofing), and only the owning NIC answers ARP.
#
# Usage (as root): image/smoke.sh [IMAGE_DIR]     (default: image/out/base, see build.sh)
# Needs qemu-system-x86_64, ip, nft, curl and the static busybox (for arping).
# Environment: WEFT_SMOKE_LOGS=DIR keeps the console logs there; WEFT_SMOKE_BOOT_TIMEOUT
# bounds each boot (default 120 s).
# The test uses `ip` to set up its namespace; weft-guest itself never does. Everything it
# creates is removed on exit, also after a failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${1:-$repo/image/out/base}"
boot_timeout="${WEFT_SMOKE_BOOT_TIMEOUT:-120}"

ns="weft-smoke-$$"
tmp="$(mktemp -d)"
qemu_pid=""
failed=0

say() { echo "smoke.sh: $*"; }
fail() { echo "smoke.sh: FAIL: $*" >&2; failed=1; }

cleanup() {
    if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
    if [[ -n "${WEFT_SMOKE_LOGS:-}" ]]; then
        mkdir -p "$WEFT_SMOKE_LOGS"
        cp "$tmp"/*.log "$WEFT_SMOKE_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

[[ $EUID -eq 0 ]] || { echo "smoke.sh: needs root (network namespaces, TAP devices)" >&2; exit 1; }
for f in kernel initrd; do
    [[ -f "$image/$f" ]] || { echo "smoke.sh: no $image/$f: run image/build.sh first" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "smoke.sh: qemu-system-x86_64 missing" >&2; exit 1; }

in_ns() { ip netns exec "$ns" "$@"; }

# Starts QEMU in the namespace in the background; $1 is the console log, $2 the kernel
# command line, the rest extra QEMU arguments.
boot() {
    local log="$1" append="$2"
    shift 2
    : >"$log"
    # Not through in_ns: $! must be the process that becomes timeout, so kill reaches QEMU.
    ip netns exec "$ns" timeout "$boot_timeout" qemu-system-x86_64 \
        -accel tcg -machine pc -m 256 -smp 1 \
        -display none -monitor none -nodefaults -no-reboot \
        -kernel "$image/kernel" -initrd "$image/initrd" \
        -serial "file:$log" -append "$append" "$@" 2>>"$tmp/qemu.err" &
    qemu_pid=$!
    boot_started=$EPOCHREALTIME
}

# Seconds since the last boot started, with one decimal.
since_boot() { awk -v a="$boot_started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Waits until the console log has a line matching $2, at most $3 seconds.
wait_for_line() {
    local log="$1" pattern="$2" limit="$3" start=$SECONDS
    while ((SECONDS - start < limit)); do
        grep -q -- "$pattern" "$log" && return 0
        kill -0 "$qemu_pid" 2>/dev/null || break
        sleep 0.2
    done
    grep -q -- "$pattern" "$log"
}

expect_line() {
    local log="$1" line="$2"
    if grep -qxF -- "$line" <(tr -d '\r' <"$log"); then
        say "ok: $line"
    else
        fail "console lacks: $line"
    fi
}

show_console() {
    echo "----- console: $1 -----" >&2
    tr -d '\r' <"$1" >&2 || true
    echo "----- QEMU -----" >&2
    cat "$tmp/qemu.err" >&2 || true
    echo "-----" >&2
}

# 3. Three NICs in one /16, as weft renders pool interfaces: only the first entry carries
# the gateway. The namespace plays the host: each TAP holds the gateway address, each guest
# address is routed to its own TAP, and a packet whose source address arrives on another
# TAP is dropped (and counted), as weft's nftables table does.
multi_homed() {
    local log3="$tmp/console-multi.log" i addr page drops macs=() nics=()
    local taps=(m0 m1 m2) addrs=(10.100.0.2 10.100.0.3 10.100.0.4)
    # The first boot's TAPs and routes would stand in the way.
    in_ns ip link del t0
    in_ns ip link del t1
    for i in 0 1 2; do
        in_ns ip tuntap add "${taps[i]}" mode tap
        in_ns ip link set "${taps[i]}" up
        in_ns ip addr add 10.100.255.254/32 dev "${taps[i]}"
        in_ns ip route add "${addrs[i]}/32" dev "${taps[i]}"
        macs+=("12:b0:0a:64:00:0$((i + 2))")
        nics+=(-netdev "tap,id=m$i,ifname=${taps[i]},script=no,downscript=no,vhost=off"
            -device "virtio-net-pci,netdev=m$i,mac=${macs[i]}")
    done
    # An address outside the guest's networks, as a client on the internet has.
    in_ns ip addr add 192.0.2.1/32 dev lo
    in_ns nft -f - <<'EOF'
table inet smoke {
    set guests {
        type ifname . ipv4_addr
        elements = { "m0" . 10.100.0.2, "m1" . 10.100.0.3, "m2" . 10.100.0.4 }
    }
    chain input {
        type filter hook input priority 0; policy accept;
        iifname { "m0", "m1", "m2" } iifname . ip saddr != @guests counter drop
    }
}
EOF

    boot "$log3" "console=ttyS0 panic=-1 quiet \
netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 \
netdev.ip=10.100.0.3/16::10.100.255.254 netdev.ip=10.100.0.4/16::10.100.255.254 \
weft.macs=$(IFS=,; echo "${macs[*]}") -- /bin/busybox httpd -f -p 8080 -h /www" "${nics[@]}"
    if wait_for_line "$log3" "weft-guest: app start" "$boot_timeout"; then
        say "booted with three NICs in $(since_boot) s"
    else
        fail "no 'app start' line within $boot_timeout s (three NICs)"
    fi
    for i in 0 1 2; do
        expect_line "$log3" "weft-guest: iface eth$i mac ${macs[i]} addr ${addrs[i]}/16"
        expect_line "$log3" "weft-guest: rule from ${addrs[i]} table $((100 + i))"
    done
    expect_line "$log3" "weft-guest: route default via 10.100.255.254 dev eth0"
    if (($(grep -c "weft-guest: route default" "$log3") != 1)); then
        fail "the main table does not hold exactly one default route"
    fi
    if grep -q "weft-guest: error:" "$log3"; then
        fail "weft-guest printed errors (three NICs)"
    fi

    for i in 0 1 2; do
        addr="${addrs[i]}"
        if in_ns ping -c 3 -i 0.3 -W 2 "$addr" >/dev/null 2>&1; then
            say "ok: ping $addr (eth$i)"
        else
            fail "$addr (eth$i) does not answer ping through ${taps[i]}"
        fi
        # From outside the guest's network, its answer takes the NIC's default route.
        if in_ns ping -c 2 -i 0.3 -W 2 -I 192.0.2.1 "$addr" >/dev/null 2>&1; then
            say "ok: ping $addr from 192.0.2.1"
        else
            fail "$addr (eth$i) does not answer ping from outside its network"
        fi
        page="$(in_ns curl -sS --max-time 10 "http://$addr:8080/" 2>/dev/null)" || true
        if grep -q "Hello from a weft guest" <<<"$page"; then
            say "ok: http://$addr:8080/ answers through ${taps[i]}"
        else
            fail "http://$addr:8080/ did not answer through ${taps[i]}"
        fi
    done

    # ARP for eth1's address on eth0's TAP: eth0 must not answer for it.
    if in_ns /bin/busybox arping -q -c 2 -w 3 -I m0 -s 10.100.255.254 10.100.0.3; then
        fail "a NIC answered ARP for another NIC's address"
    else
        say "ok: no answer to ARP for 10.100.0.3 on m0"
    fi

    drops="$(in_ns nft list chain inet smoke input | grep -o 'packets [0-9]*' | head -n 1)"
    if [[ "$drops" == "packets 0" ]]; then
        say "ok: no guest packet left through a NIC that does not own its source address"
    else
        fail "the anti-spoofing rule dropped guest packets ($drops)"
    fi
    ((failed)) && show_console "$log3"

    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=""
}

ip netns add "$ns"
in_ns ip link set lo up
for tap in t0 t1; do
    in_ns ip tuntap add "$tap" mode tap
    in_ns ip link set "$tap" up
done
in_ns ip addr add 10.100.255.254/32 dev t0
in_ns ip route add 10.100.0.2/32 dev t0

# 1. Network setup and the demo app.
log1="$tmp/console-net.log"
boot "$log1" "console=ttyS0 panic=-1 quiet \
netdev.ip=10.100.0.2/16:10.100.255.254:10.100.255.254 netdev.ip= \
weft.macs=12:b0:0a:64:00:02,12:b1:00:00:00:01 \
-- /bin/busybox httpd -f -p 8080 -h /www" \
    -netdev tap,id=n0,ifname=t0,script=no,downscript=no,vhost=off \
    -device virtio-net-pci,netdev=n0,mac=12:b0:0a:64:00:02 \
    -netdev tap,id=n1,ifname=t1,script=no,downscript=no,vhost=off \
    -device virtio-net-pci,netdev=n1,mac=12:b1:00:00:00:01

if wait_for_line "$log1" "weft-guest: app start" "$boot_timeout"; then
    say "booted to the app in $(since_boot) s"
else
    fail "no 'app start' line within $boot_timeout s"
fi
expect_line "$log1" "weft-guest: iface eth0 mac 12:b0:0a:64:00:02 addr 10.100.0.2/16"
expect_line "$log1" "weft-guest: iface eth1 mac 12:b1:00:00:00:01 addr none"
expect_line "$log1" "weft-guest: route default via 10.100.255.254 dev eth0"
expect_line "$log1" "weft-guest: nameserver 10.100.255.254"
expect_line "$log1" "weft-guest: app start /bin/busybox httpd -f -p 8080 -h /www"
if grep -q "weft-guest: error:" "$log1"; then
    fail "weft-guest printed errors"
fi

pinged=0
for _ in $(seq 1 20); do
    if in_ns ping -c 1 -W 1 10.100.0.2 >/dev/null 2>&1; then
        pinged=1
        break
    fi
done
if ((pinged)); then say "ok: ping 10.100.0.2"; else fail "10.100.0.2 does not answer ping"; fi

page=""
for _ in $(seq 1 10); do
    page="$(in_ns curl -sS --max-time 5 http://10.100.0.2:8080/ 2>/dev/null)" && break
    sleep 1
done
if grep -q "Hello from a weft guest" <<<"$page"; then
    say "ok: http://10.100.0.2:8080/ serves the demo page"
else
    fail "http://10.100.0.2:8080/ did not serve the demo page"
fi
((failed)) && show_console "$log1"

kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""

# 2. Environment, exit code and power off, with no NIC at all.
log2="$tmp/console-exit.log"
# $GREETING is for the guest's shell to expand.
# shellcheck disable=SC2016
boot "$log2" 'console=ttyS0 panic=-1 quiet env.vars=[ "GREETING=hello weft" ] -- /bin/sh -c "echo greeting=$GREETING; exit 3"' \
    -nic none -device isa-debug-exit,iobase=0xf4,iosize=0x04
status=0
wait "$qemu_pid" || status=$?
qemu_pid=""
# timeout(1) exits 124 when it had to stop QEMU; QEMU's own status passes through.
if ((status == 124)); then
    fail "QEMU did not exit by itself within $boot_timeout s"
elif ((status == (3 << 1 | 1))); then
    say "ok: the VM ended itself after $(since_boot) s, QEMU exit status $status (app code 3)"
else
    fail "QEMU exited with status $status, not 7 (app code 3 through isa-debug-exit)"
fi
expect_line "$log2" "weft-guest: route default none"
expect_line "$log2" "greeting=hello weft"
expect_line "$log2" "weft-guest: app exit 3"
if grep -q "weft-guest: iface" "$log2"; then
    fail "a VM without NICs reported an interface"
fi
((failed)) && show_console "$log2"

multi_homed

if ((failed)); then
    say "FAILED"
    exit 1
fi
say "all checks passed"
