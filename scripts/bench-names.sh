#!/bin/bash
# The memory of berth's monitors with and without the embedded DNS server: N idle containers
# on a user network (each monitor serves 127.0.0.11) and N on the default network (no
# server), their monitors' Pss and Rss (smaps_rollup), then again after every user-network
# container asked 20 names (the resolver's caches filled); and `run --rm true` on both.
# Runs in a data root of its own with bridges bn-bench0/bn-benchd0 (10.203.0.0/16), removed
# at the end. Usage: scripts/bench-names.sh [BERTH_BINARY] [N]
set -euo pipefail
BERTH_BIN=${1:-target/release/berth}
N=${2:-5}
W=$(mktemp -d /tmp/berth-bench-names.XXXXXX)
B=("$BERTH_BIN" --data-root "$W/data" --root "$W/run")
IMG=berth-tests/busybox:latest
say() { echo "bench-names: $*" >&2; }
cleanup() {
    for id in $("${B[@]}" container ls -aq 2>/dev/null); do "${B[@]}" container rm -f "$id" >/dev/null 2>&1 || true; done
    "${B[@]}" network prune -f >/dev/null 2>&1 || true
    ip link del bn-bench0 2>/dev/null || true
    ip link del bn-benchd0 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/data"
echo '{"bridge": "bn-benchd0", "bip": "10.203.1.1/24"}' > "$W/data/network-config.json"
say "importing bundles/busybox/rootfs as $IMG into $W"
tar -C bundles/busybox/rootfs --numeric-owner -cf "$W/rootfs.tar" .
"${B[@]}" import "$W/rootfs.tar" "$IMG" >/dev/null
"${B[@]}" network create --subnet 10.203.0.0/24 -o com.docker.network.bridge.name=bn-bench0 bench-user >/dev/null
for i in $(seq "$N"); do
    "${B[@]}" container run -d --name "u$i" --network bench-user "$IMG" sleep 100000 >/dev/null
    "${B[@]}" container run -d --name "d$i" --network bridge "$IMG" sleep 100000 >/dev/null
done
monitors() { # the monitors (the parents of the containers' init) of the containers named $1*
    for c in $(seq "$N"); do
        pid=$("${B[@]}" container inspect -f '{{.State.Pid}}' "$1$c")
        awk '/^PPid:/ {print $2}' "/proc/$pid/status"
    done
}
mem() { # sum of Pss and Rss (KiB) of the monitors of $1*
    local p=0 r=0 a b
    for pid in $(monitors "$1"); do
        read -r a b < <(awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {print p + 0, r + 0}' "/proc/$pid/smaps_rollup")
        p=$((p + a)); r=$((r + b))
    done
    echo "$p $r"
}
sleep 1
read -r up ur < <(mem u); read -r dp dr < <(mem d)
say "idle, $N monitors each: user network (DNS server) Pss $up KiB Rss $ur KiB; default network Pss $dp KiB Rss $dr KiB"
for i in $(seq "$N"); do
    "${B[@]}" container exec "u$i" sh -c 'for n in 1 2 3 4; do for c in u1 u2 u3 u4 u5; do nslookup $c >/dev/null 2>&1; done; done' || true
done
read -r up ur < <(mem u)
say "after 20 lookups each: user network Pss $up KiB Rss $ur KiB"
t() { local s e; s=$(date +%s%N); for _ in 1 2 3 4 5 6 7 8 9 10; do "${B[@]}" container run --rm --network "$1" "$IMG" true; done; e=$(date +%s%N); echo $(( (e - s) / 10000000 )); }
say "run --rm true (mean of 10): user network $(t bench-user) ms, default network $(t bridge) ms, none $(t none) ms"
