#!/usr/bin/env bash
# Compose benchmark: the same compose file (a healthcheck-gated app: `db`, then `web` once db is
# healthy, then `worker` once web is; each with a healthcheck every 250 ms) brought up with
# `up -d` until every container is healthy, and taken down with `down`, by `berth compose`,
# Debian's docker-compose (1.29) on a private dockerd, and podman-compose (1.0.3) on a podman of
# its own, side by side with hyperfine in rounds. Ratios only: nothing here asserts a time.
#
# "Healthy" is polled the same way for each (every 50 ms, the engine's inspect of each project
# container). podman runs its healthchecks from systemd timers, and this host has no systemd:
# for podman the poll runs `podman healthcheck run` itself, which is what the timer would do.
# podman-compose 1.0.3 ignores depends_on conditions (it starts every service at once), so its
# `up` is not gated: the table says so. podman-compose's `down` leaves the project's network
# (1.0.3 removes none); the next `up` reuses it.
#
# Each engine has all its state in a temp dir, as in scripts/bench-engine.sh (the client
# suites' lock, cleanup stack and host snapshot, scripts/clients/lib.sh): berth's data root and
# --root; a private dockerd (no iptables rules, its own data root, exec root and socket);
# podman's storage, run root, tmp dir, containers.conf and network configs, runc as its runtime,
# its bridges renamed in their configs (podman 4.3 cannot name them) so that they are the
# bench's own. Prints a table and writes it to bench/results/compose-DATE.md.
#
#   scripts/bench-compose.sh                               # the release build (made first)
#   BERTH_BIN=target/debug/berth BENCH_COMPOSE_RUNS=3 scripts/bench-compose.sh   # a quick try
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
runs=${BENCH_COMPOSE_RUNS:-12}
say() { printf '== %s\n' "$*"; }

for tool in hyperfine docker-compose dockerd containerd podman podman-compose runc python3; do
    command -v "$tool" >/dev/null || { echo "bench-compose: $tool is missing (see .ci/run)" >&2; exit 1; }
done
if [ -z "${CLIENTS_LOCK_HELD:-}" ] && [ -z "${BERTH_BIN:-}" ]; then
    say "building berth (release)"
    make --no-print-directory build >/dev/null
    [ -x bundles/busybox/rootfs/bin/busybox ] || scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null
fi

SUITE=bench-compose
CLIENT_RUNTIME=$(command -v runc)
. scripts/clients/lib.sh
set -e
berth_bin=$(readlink -f "${BERTH_BIN:-$top/target/release/berth}")
IMG=$IMAGE_REF
make_image || die "could not make the busybox image"
archive=$W/image/busybox-archive.tar
project=benchapp

# --- the app ---------------------------------------------------------------------------------
# Each service answers TERM at once (a shell trap; `sleep & wait` lets the trap run), so that
# `down` measures the engines and not a stop timeout.
mkdir -p "$W/app"
service() { # NAME [DEPENDENCY]
    cat <<EOF
  $1:
    image: $IMG
    command: ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 1 & wait; done"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 250ms
      timeout: 5s
      retries: 100
EOF
    [ $# -lt 2 ] || printf '    depends_on:\n      %s:\n        condition: service_healthy\n' "$2"
}
{
    echo "services:"
    service db
    service web db
    service worker web
} >"$W/app/compose.yaml"

# --- berth -------------------------------------------------------------------------------------
BERTH=("$berth_bin" --data-root "$W/berth-data" --root "$W/berth-run")
on_exit '(cd "$W/app" && "${BERTH[@]}" compose -p $project down -v) >/dev/null 2>&1'
"${BERTH[@]}" load -i "$archive" >/dev/null

# --- a private dockerd (scripts/clients/lib.sh) ---------------------------------------------
bench_dockerd
on_exit '(cd "$W/app" && docker-compose -p $project down -v) >/dev/null 2>&1'
"${DOCKER[@]}" load -i "$archive" >/dev/null

# --- podman, behind the wrapper podman-compose calls ------------------------------------------
own_host_paths /run/containers /var/lib/containers /run/libpod
own_cgroups libpod_parent
mkdir -p "$W/ptmp" "$W/networks"
cat >"$W/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[network]
network_backend = "netavark"
network_config_dir = "$W/networks"
EOF
bridge=bcb$$
cat >"$W/podman" <<EOF
#!/bin/sh
export CONTAINERS_CONF=$W/containers.conf
P="podman --root $W/storage --runroot $W/prun --tmpdir $W/ptmp --storage-driver overlay
    --cgroup-manager cgroupfs --events-backend file --network-config-dir $W/networks"
if [ "\$1" = network ] && [ "\$2" = create ]; then
    eval "name=\\\${\$#}"
    n=\$(ls $W/networks | grep -c '\\.json\$')
    \$P "\$@" || exit
    sed -i "s/\"network_interface\": \"[^\"]*\"/\"network_interface\": \"$bridge\$n\"/" "$W/networks/\$name.json"
    exit
fi
exec \$P "\$@"
EOF
chmod +x "$W/podman"
PODMAN=("$W/podman")
on_exit '(cd "$W/app" && podman-compose --podman-path "$W/podman" -p $project down) >/dev/null 2>&1; "${PODMAN[@]}" rm -af -t 0; for n in $("${PODMAN[@]}" network ls -q --filter label=com.docker.compose.project); do "${PODMAN[@]}" network rm -f $n; done; "${PODMAN[@]}" system reset -f; wait_processes_gone'
"${PODMAN[@]}" load -i "$archive" >/dev/null

# --- what each engine runs -------------------------------------------------------------------
# healthy ENGINE: exits 0 once the project's three containers are healthy.
cat >"$W/healthy" <<EOF
#!/bin/bash
# Polls until every container of the project is healthy (60 s at most).
for i in \$(seq 1200); do
    case \$1 in
    berth) ids=\$(${BERTH[*]} container ls -aq --filter label=com.docker.compose.project=$project)
           st=\$(for c in \$ids; do ${BERTH[*]} container inspect --format '{{.State.Health.Status}}' \$c; done) ;;
    docker) ids=\$(${DOCKER[*]} ps -aq --filter label=com.docker.compose.project=$project)
            st=\$(for c in \$ids; do ${DOCKER[*]} inspect --format '{{.State.Health.Status}}' \$c; done) ;;
    podman) ids=\$($W/podman ps -aq --filter label=com.docker.compose.project=$project)
            st=\$(for c in \$ids; do $W/podman healthcheck run \$c >/dev/null 2>&1 && echo healthy || echo unhealthy; done) ;;
    esac
    n=\$(printf '%s\n' "\$st" | grep -cx healthy)
    [ "\$n" = 3 ] && exit 0
    sleep 0.05
done
echo "\$1: not healthy: \$st" >&2
exit 1
EOF
chmod +x "$W/healthy"
declare -A up_cmd down_cmd
up_cmd[berth]="${BERTH[*]} compose -p $project up -d"
down_cmd[berth]="${BERTH[*]} compose -p $project down"
up_cmd[docker-compose]="docker-compose -p $project up -d"
down_cmd[docker-compose]="docker-compose -p $project down"
up_cmd[podman-compose]="podman-compose --podman-path $W/podman -p $project up -d"
down_cmd[podman-compose]="podman-compose --podman-path $W/podman -p $project down"
declare -A health_of=([berth]=berth [docker-compose]=docker [podman-compose]=podman)
engines=(berth docker-compose podman-compose)

cd "$W/app"
for e in "${engines[@]}"; do
    say "$e: a first up (images, networks) and down"
    out=$(${up_cmd[$e]} 2>&1) || die "$e: '${up_cmd[$e]}' failed: $out"
    "$W/healthy" "${health_of[$e]}" || die "$e: the app did not become healthy"
    out=$(${down_cmd[$e]} 2>&1) || die "$e: '${down_cmd[$e]}' failed: $out"
done

rounds=3
per_round=$(((runs + rounds - 1) / rounds))
say "hyperfine: up -d to all healthy, and down, $((per_round * rounds)) runs each in $rounds rounds"
for r in $(seq $rounds); do
    for e in "${engines[@]}"; do
        # up: from nothing (the prepare takes the app down) to every container healthy.
        hyperfine -N --runs "$per_round" --export-json "$W/up.$e.$r.json" \
            --prepare "bash -c '${down_cmd[$e]} >/dev/null 2>&1'" \
            -n "$e" "bash -c '${up_cmd[$e]} >/dev/null 2>&1 && $W/healthy ${health_of[$e]}'" >/dev/null
        # down: from the app healthy.
        hyperfine -N --runs "$per_round" --export-json "$W/down.$e.$r.json" \
            --prepare "bash -c '${up_cmd[$e]} >/dev/null 2>&1 && $W/healthy ${health_of[$e]}'" \
            -n "$e" "bash -c '${down_cmd[$e]} >/dev/null 2>&1'" >/dev/null
    done
done
cd "$top"

out=$W/table.md
{
    echo "| compose | up -d to all healthy, median (ms) | berth ÷ it | down, median (ms) | berth ÷ it | gated by health |"
    echo "| --- | --- | --- | --- | --- | --- |"
    bu=$(median "$W/up.berth.*.json" berth 0)
    bd=$(median "$W/down.berth.*.json" berth 0)
    for e in "${engines[@]}"; do
        u=$(median "$W/up.$e.*.json" "$e" 0)
        d=$(median "$W/down.$e.*.json" "$e" 0)
        gated=yes
        [ "$e" != podman-compose ] || gated="no (1.0.3 ignores conditions)"
        printf '| %s | %s | %s | %s | %s | %s |\n' "$e" "$u" "$(ratio "$bu" "$u")" "$d" "$(ratio "$bd" "$d")" "$gated"
    done
} >"$out"
cat "$out"
mkdir -p "$top/bench/results"
dest=$top/bench/results/compose-$(date -u +%Y-%m-%d).md
{
    echo "# berth compose benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
    echo
    echo "Three busybox services, each gated on the previous one's health (healthcheck every 250 ms);"
    echo "berth $("$berth_bin" --version | awk 'NR == 1 {print $3}'), docker-compose $(docker-compose version --short) on Docker $(dockerd --version | awk '{print $3}' | tr -d ,),"
    echo "podman-compose 1.0.3 on podman $(podman --version | awk '{print $3}') (runc). Medians of $((per_round * rounds)) runs in $rounds rounds;"
    echo "a ratio below 1 means berth is faster."
    echo
    cat "$out"
} >"$dest"
say "written to ${dest#"$top"/}"
