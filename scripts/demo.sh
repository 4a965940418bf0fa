#!/usr/bin/env bash
# weft's demo: from a fresh Debian 12 host to a running microVM with two network interfaces,
# one from the host's pools and one on a TAP device the user brings.
#
#   scripts/demo.sh          set up, start weftd on its embedded defaults, boot an instance
#   scripts/demo.sh down     stop weftd and the guests, remove the demo's namespaces
#
# Everything runs in network namespaces the script makes; the host's own network is not
# touched:
#
#   weft-demo-inet  "the internet": 192.0.2.1, behind weftd's uplink eth0 (192.0.2.2)
#   weft-demo-host  weftd, its pool TAP devices, and the user's custtap0 in bridge custbr0
#   weft-demo-user  "the user's own network": 172.30.5.1/24, bridged to custtap0
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOST=weft-demo-host INET=weft-demo-inet USER_NS=weft-demo-user
STATE=/var/lib/weft
API=http://127.0.0.1:7070

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: error: $*" >&2; exit 1; }
in_host() { ip netns exec "$HOST" "$@"; }

down() {
    if [[ -f "$STATE/weftd.pid" ]]; then
        kill "$(cat "$STATE/weftd.pid")" 2>/dev/null || true
        rm -f "$STATE/weftd.pid"
    fi
    # Guests of the demo run in its host namespace.
    for pid in $(ip netns pids "$HOST" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for ns in "$HOST" "$INET" "$USER_NS"; do ip netns del "$ns" 2>/dev/null || true; done
    # The store describes guests and devices that are gone now.
    rm -rf "$STATE/weft.db" "$STATE/weft.db-wal" "$STATE/weft.db-shm" "$STATE/instances"
}

if [[ "${1:-}" == "down" ]]; then
    down
    echo "demo: removed weftd, its guests and the demo namespaces"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "run as root: weft creates TAP devices, namespaces and nftables rules"

say "installing packages"
scripts/install-deps.sh

say "building the base guest image (Debian cloud kernel, weft-guest as init, busybox)"
image/build.sh
mkdir -p "$STATE/images"
rm -rf "$STATE/images/base"
cp -r image/out/base "$STATE/images/base"

say "building weft"
cargo build --release --quiet --bin weftd

say "creating the demo namespaces"
down
ip netns add "$INET"; ip netns add "$HOST"; ip netns add "$USER_NS"
for ns in "$INET" "$HOST" "$USER_NS"; do ip -n "$ns" link set lo up; done
ip -n "$HOST" link add eth0 type veth peer name uplink0 netns "$INET"
ip -n "$HOST" addr add 192.0.2.2/24 dev eth0
ip -n "$HOST" link set eth0 up
ip -n "$HOST" route add default via 192.0.2.1
ip -n "$INET" addr add 192.0.2.1/24 dev uplink0
ip -n "$INET" link set uplink0 up
# The user's own TAP device, bridged to the user's own network.
ip -n "$HOST" tuntap add dev custtap0 mode tap
ip -n "$HOST" link add custbr0 type bridge
ip -n "$HOST" link set custbr0 up
ip -n "$HOST" link set custtap0 master custbr0 up
ip -n "$HOST" link add user-port type veth peer name user0 netns "$USER_NS"
ip -n "$HOST" link set user-port master custbr0 up
ip -n "$USER_NS" addr add 172.30.5.1/24 dev user0
ip -n "$USER_NS" link set user0 up

say "starting weftd on its embedded defaults (weftd --print-default-config shows them)"
mkdir -p "$STATE"
in_host setsid target/release/weftd </dev/null >"$STATE/weftd.log" 2>&1 &
echo $! >"$STATE/weftd.pid"
for _ in $(seq 100); do
    in_host curl -sf "$API/v1/healthz" >/dev/null && break
    sleep 0.2
done
in_host curl -sf "$API/v1/healthz" >/dev/null || { cat "$STATE/weftd.log"; die "weftd did not start"; }
TOKEN="$(cat "$STATE/default.token")"
api() { in_host curl -s -H "Authorization: Bearer $TOKEN" "$@"; }

say "creating an instance: a pool interface, and 172.30.5.2/24 on the user's custtap0"
body='{
  "name": "demo",
  "image": "base",
  "args": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
  "network_interfaces": [{}, {"ip": "172.30.5.2/24", "tap_name": "custtap0"}]
}'
echo "POST /v1/instances $body"
answer="$(api -X POST "$API/v1/instances" -H 'Content-Type: application/json' -d "$body")"
echo "$answer" | jq .
[[ "$(echo "$answer" | jq -r .status)" == success ]] || die "create failed"
pool_ip="$(echo "$answer" | jq -r '.data.instances[0].private_ip')"

say "waiting for the guest to boot (QEMU; emulated without KVM, which takes a few seconds)"
console=""
for _ in $(seq 180); do
    console="$(api "$API/v1/instances/demo/log" | jq -r '.data.instances[0].output' | base64 -d)"
    grep -q 'weft-guest: app start' <<<"$console" && break
    sleep 1
done
grep 'weft-guest:' <<<"$console" || die "the guest did not start its app"

say "the instance"
api "$API/v1/instances/demo" | jq '.data.instances[0] | {name, state, private_ip, gateway, nameserver,
    network_interfaces: [.network_interfaces[] | {name, private_ip, mac, tap_name, autoconfig}]}'

say "proof: the guest answers on its pool address $pool_ip (from weftd's host)"
for _ in $(seq 30); do in_host ping -c 1 -W 2 "$pool_ip" >/dev/null && break; sleep 1; done
in_host ping -c 2 -W 2 "$pool_ip"
echo "GET http://$pool_ip:8080/ ->"
in_host curl -sf --max-time 5 "http://$pool_ip:8080/"

say "proof: the guest answers on its own address 172.30.5.2 (from the user's network)"
ip netns exec "$USER_NS" ping -c 2 -W 2 172.30.5.2
echo "GET http://172.30.5.2:8080/ ->"
ip netns exec "$USER_NS" curl -sf --max-time 5 "http://172.30.5.2:8080/"

cat <<EOT

== done. weftd keeps running in namespace $HOST (log: $STATE/weftd.log).

  Talk to the API:   ip netns exec $HOST curl -H "Authorization: Bearer \$(cat $STATE/default.token)" $API/v1/instances
  Delete the instance:
    ip netns exec $HOST curl -X DELETE -H "Authorization: Bearer \$(cat $STATE/default.token)" $API/v1/instances/demo
  Remove everything: scripts/demo.sh down
EOT
