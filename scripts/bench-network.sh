#!/usr/bin/env bash
# Network benchmark, each engine on its own default bridge, in the same run:
#  1. `run --rm IMAGE true`: berth on its default network (bridge, veth, address, NAT rules
#     already there) against `podman run --rm` (netavark, its `podman` network) and `docker run
#     --rm` (a private dockerd on a bridge of its own); berth with `--network none` too, so the
#     network's own cost shows (and BENCH_BERTH_BASE, an earlier berth binary, for before/after
#     figures of the same run). Medians of hyperfine rounds, ratios to podman.
#  2. Throughput of a published port on loopback: BENCH_NET_MIB (default 1024) MiB sent by a
#     client on the host to 127.0.0.1:PORT, received (and thrown away) by a python3 server in the
#     container's network namespace; berth (nftables DNAT, kernel path), Docker (its userland proxy, docker-proxy:
#     the private dockerd has no iptables rules, as the client suites' Docker has them only on
#     its bridge) and podman (netavark's DNAT). Best of BENCH_NET_REPEAT (3) runs, each bounded
#     by a timeout.
#
# Every engine's state is in a temp dir (berth's data root and --root, podman's storage and
# network config, the dockerd's data and exec roots); the client suites' lock and cleanup stack
# (scripts/clients/lib.sh) restore what the daemons change on the host (iptables, ip_forward);
# berth's bridge goes with its rules (berth's sweep), podman's and Docker's bridges are
# removed if they were not there. Prints a table and writes it to bench/results/network-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
runs=${BENCH_NET_RUNS:-24}
mib=${BENCH_NET_MIB:-1024}
repeat=${BENCH_NET_REPEAT:-3}
say() { printf '== %s\n' "$*"; }

for tool in hyperfine podman conmon dockerd containerd docker-proxy runc python3 nft; do
    command -v "$tool" >/dev/null || { echo "bench-network: $tool is missing (see .ci/run)" >&2; exit 1; }
done
if [ -z "${CLIENTS_LOCK_HELD:-}" ]; then
    say "building berth (release)"
    make --no-print-directory build >/dev/null
    [ -x bundles/busybox/rootfs/bin/busybox ] || scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null
fi

SUITE=bench-network
CLIENT_RUNTIME=$(command -v runc)
. scripts/clients/lib.sh
set -e
berth_bin=$top/target/release/berth
IMG=$IMAGE_REF
make_image || die "could not make the busybox image"
archive=$W/image/busybox-archive.tar

# --- berth: its default network on a bridge of this run's own --------------------------------
BBRIDGE=berthbench0
mkdir -p "$W/berth-data"
echo "{\"bridge\": \"$BBRIDGE\"}" >"$W/berth-data/network-config.json"
BERTH=("$berth_bin" --data-root "$W/berth-data" --root "$W/berth-run")
# At exit: the containers, then the bridge; berth's next network command sweeps the rules of
# a bridge that is gone (the whole table with the last one, and ip_forward as it was).
on_exit 'delete_link '$BBRIDGE'; "${BERTH[@]}" network ls >/dev/null'
on_exit 'ids=$("${BERTH[@]}" container ls -aq); [ -z "$ids" ] || "${BERTH[@]}" container rm -f $ids'
"${BERTH[@]}" load -i "$archive" >/dev/null
# BENCH_BERTH_BASE=PATH: another berth binary (an earlier build) on a data root and default
# bridge of its own, in the same rounds: before/after figures measured under the same load.
if [ -n "${BENCH_BERTH_BASE:-}" ]; then
    mkdir -p "$W/base-data"
    echo '{"bridge": "berthbench1"}' >"$W/base-data/network-config.json"
    BASE=("$BENCH_BERTH_BASE" --data-root "$W/base-data" --root "$W/base-run")
    on_exit 'delete_link berthbench1; "${BASE[@]}" network ls >/dev/null'
    on_exit 'ids=$("${BASE[@]}" container ls -aq); [ -z "$ids" ] || "${BASE[@]}" container rm -f $ids'
    "${BASE[@]}" load -i "$archive" >/dev/null
fi

# --- podman: rootful, netavark, its default network ------------------------------------------
own_host_paths /run/containers /var/lib/containers /run/libpod
own_cgroups libpod_parent
ip link show podman0 >/dev/null 2>&1 || on_exit 'delete_link podman0'
nft list table inet netavark >/dev/null 2>&1 || on_exit 'nft delete table inet netavark 2>/dev/null'
mkdir -p "$W/tmp" "$W/networks"
export CONTAINERS_CONF=$W/containers.conf
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_config_dir = "$W/networks"
EOF
PODMAN=(podman --runtime "$CLIENT_RUNTIME" --root "$W/storage" --runroot "$W/prun" --tmpdir "$W/tmp"
    --cgroup-manager cgroupfs --events-backend file)
on_exit '"${PODMAN[@]}" rm -af -t 0; "${PODMAN[@]}" system reset -f; wait_processes_gone'
"${PODMAN[@]}" load -i "$archive" >/dev/null

# --- a private dockerd on a bridge of its own, no iptables rules (docker-proxy for -p) --------
own_host_paths /run/containerd /run/docker /etc/docker/key.json
own_cgroups berth-bench-docker
DBRIDGE=berthbenchd0
delete_link $DBRIDGE
ip link add $DBRIDGE type bridge && ip addr add 10.213.51.1/24 dev $DBRIDGE && ip link set $DBRIDGE up ||
    die "could not make the bridge $DBRIDGE"
on_exit "delete_link $DBRIDGE"
export DOCKER_CONFIG=$W/client
mkdir -p "$DOCKER_CONFIG" && echo '{}' >"$DOCKER_CONFIG/config.json"
cat >"$W/daemon.json" <<EOF
{"bridge": "$DBRIDGE", "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false,
 "exec-opts": ["native.cgroupdriver=cgroupfs"], "cgroup-parent": "/berth-bench-docker",
 "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 1024}}}
EOF
DOCKER=("$DOCKER_CLI" -H "unix://$W/docker.sock")
dockerd --config-file "$W/daemon.json" --data-root "$W/docker" --exec-root "$W/exec" \
    --pidfile "$W/dockerd.pid" -H "unix://$W/docker.sock" >"$W/dockerd.log" 2>&1 &
on_exit 'ids=$("${DOCKER[@]}" ps -aq); [ -z "$ids" ] || "${DOCKER[@]}" rm -f $ids; stop_pidfile "$W/dockerd.pid" dockerd'
wait_for 60 "${DOCKER[@]}" version >/dev/null || die "dockerd did not start: $(tail -n 5 "$W/dockerd.log")"
"${DOCKER[@]}" load -i "$archive" >/dev/null

# --- 1. run --rm true on each default bridge --------------------------------------------------
engines=(berth berth-none podman docker)
declare -A run_cmd
if [ -n "${BENCH_BERTH_BASE:-}" ]; then
    engines=(berth berth-base berth-none podman docker)
    run_cmd[berth-base]="${BASE[*]} container run --rm $IMG true"
fi
run_cmd[berth]="${BERTH[*]} container run --rm $IMG true"
run_cmd[berth-none]="${BERTH[*]} container run --rm --network none $IMG true"
run_cmd[podman]="${PODMAN[*]} run --rm $IMG true"
run_cmd[docker]="${DOCKER[*]} run --rm $IMG true"
for e in "${engines[@]}"; do
    out=$(${run_cmd[$e]} 2>&1) || die "$e: '${run_cmd[$e]}' failed: $out"
done
rounds=4
per_round=$(((runs + rounds - 1) / rounds))
say "hyperfine: run --rm true, $((per_round * rounds)) runs each in $rounds rounds (${engines[*]})"
args=()
for e in "${engines[@]}"; do args+=(-n "$e" "${run_cmd[$e]}"); done
for r in $(seq $rounds); do
    hyperfine -N --warmup 2 --runs "$per_round" --export-json "$W/run.$r.json" "${args[@]}" >/dev/null
done

# --- 2. a published port's throughput on loopback ---------------------------------------------
cat >"$W/send.py" <<'EOF'
# send.py HOST PORT BYTES: connects (retrying while the server comes up), sends BYTES, closes
# its side and waits for the server's end; prints MB/s (10^6 bytes a second).
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
end = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        if time.monotonic() > end:
            raise
        time.sleep(0.05)
buf = bytes(1 << 20)
t = time.monotonic()
left = size
while left > 0:
    n = min(left, len(buf))
    s.sendall(memoryview(buf)[:n])
    left -= n
s.shutdown(socket.SHUT_WR)
s.settimeout(120)
while s.recv(65536):
    pass
print(f"{size / (time.monotonic() - t) / 1e6:.0f}")
EOF
cat >"$W/recv.py" <<'EOF'
# recv.py PORT: accepts connections on 0.0.0.0:PORT, reads each to its end, closes it.
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1])))
l.listen(4)
buf = bytearray(1 << 20)
while True:
    c, _ = l.accept()
    while c.recv_into(buf):
        pass
    c.close()
EOF
# The receiver: python3 in the container's network namespace (busybox nc's small copies
# would be what is measured otherwise), behind each engine's published port.
declare -A tput
for e in berth podman docker; do
    port=$(free_port)
    case $e in
    berth) "${BERTH[@]}" container run -d --name tput -p "$port:5000" $IMG sleep 100000 >/dev/null
        pid=$("${BERTH[@]}" container inspect -f '{{.State.Pid}}' tput) ;;
    podman) "${PODMAN[@]}" run -d --name tput -p "$port:5000" $IMG sleep 100000 >/dev/null
        pid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' tput) ;;
    docker) "${DOCKER[@]}" run -d --name tput -p "$port:5000" $IMG sleep 100000 >/dev/null
        pid=$("${DOCKER[@]}" inspect -f '{{.State.Pid}}' tput) ;;
    esac
    nsenter --net=/proc/$pid/ns/net python3 "$W/recv.py" 5000 &
    receiver=$!
    # Listening before the first byte: docker-proxy accepts on the host's side at once and
    # resets the connection when nothing answers behind it yet.
    wait_for 10 sh -c "nsenter --net=/proc/$pid/ns/net ss -Hltn 'sport = :5000' | grep -q ." ||
        die "$e: the receiver did not listen"
    best=0
    for i in $(seq "$repeat"); do
        r=$(timeout 180 python3 "$W/send.py" 127.0.0.1 "$port" $((mib << 20))) || die "$e: the transfer failed"
        [ "$r" -gt "$best" ] && best=$r
        sleep 0.2
    done
    kill $receiver; wait $receiver 2>/dev/null || true
    tput[$e]=$best
    say "$e: $mib MiB through 127.0.0.1:$port -> the container's namespace: best $best MB/s"
    case $e in
    berth) "${BERTH[@]}" container rm -f tput >/dev/null ;;
    podman) "${PODMAN[@]}" rm -f -t 0 tput >/dev/null ;;
    docker) "${DOCKER[@]}" rm -f tput >/dev/null ;;
    esac
done

ref=podman
out=$W/table.md
ref_run=$(median "$W/run.*.json" $ref)
{
    echo "| engine | run --rm true median (ms) | vs $ref | published port, $mib MiB on loopback (MB/s) | vs $ref |"
    echo "| --- | --- | --- | --- | --- |"
    for e in "${engines[@]}"; do
        r=$(median "$W/run.*.json" "$e")
        t=${tput[$e]:-}
        printf '| %s | %s | %s | %s | %s |\n' "$e" "$r" "$(ratio "$r" "$ref_run")" "${t:--}" \
            "$([ -n "$t" ] && ratio "$t" "${tput[$ref]}" || echo -)"
    done
} >"$out"
cat "$out"
mkdir -p "$top/bench/results"
dest=$top/bench/results/network-$(date -u +%Y-%m-%d).md
{
    echo "# berth network benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
    echo
    echo "busybox image; each engine on its default bridge (berth: berth's default network; podman"
    echo "$(podman --version | awk '{print $3}'): netavark's podman network; Docker $(dockerd --version | awk '{print $3}' | tr -d ,):"
    echo "a bridge of its own, no iptables, docker-proxy for published ports), podman and Docker on runc"
    echo "$(runc --version | awk 'NR == 1 {print $3}'). run: medians of $((per_round * rounds)) runs in $rounds rounds;"
    echo "throughput: best of $repeat transfers of $mib MiB from the host to a receiver in the container's netns."
    echo
    cat "$out"
} >"$dest"
say "written to ${dest#"$top"/}"
run_cleanups
