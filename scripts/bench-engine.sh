#!/usr/bin/env bash
# Engine benchmark: `berth container run --rm IMAGE true` against `podman run --rm` and
# `docker run --rm`, all on runc's side of the comparison with the same busybox image and
# `--network none` (podman and Docker drive runc; berth its own runtime core), side by side
# with hyperfine in rounds; then BENCH_MANY (default 200) containers running at once (busybox
# `sleep`) under each: the total memory of the per-container processes that hold the
# containers' stdio and exit (berth's monitors, podman's conmons, Docker's containerd shims),
# as the sum of their Pss and Rss, and the time of `container ls` / `podman ps` / `docker ps`.
#
# Each engine has all its state in a temp dir: berth's data root and --root, podman's storage,
# run root and tmp dir (cgroupfs, file events), a private dockerd (no bridge, no iptables rules,
# its own data root, exec root and socket). It takes the client suites' host-wide lock, and
# their cleanup stack restores what the daemons change on the host (scripts/clients/lib.sh).
# Ratios only: nothing here asserts a time. Prints a table and writes it to
# bench/results/engine-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
runs=${BENCH_ENGINE_RUNS:-24}
many=${BENCH_MANY:-200}
say() { printf '== %s\n' "$*"; }

for tool in hyperfine podman conmon dockerd containerd runc python3; do
    command -v "$tool" >/dev/null || { echo "bench-engine: $tool is missing (see .ci/run)" >&2; exit 1; }
done
if [ -z "${CLIENTS_LOCK_HELD:-}" ]; then
    say "building berth (release)"
    make --no-print-directory build >/dev/null
    [ -x bundles/busybox/rootfs/bin/busybox ] || scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null
fi

# The client suites' framework: the lock (this script runs again under it), $W, the cleanup
# stack, the host snapshot, the busybox image as a docker-archive ($IMAGE_REF).
SUITE=bench-engine
CLIENT_RUNTIME=$(command -v runc)
. scripts/clients/lib.sh
set -e
berth_bin=$top/target/release/berth
IMG=$IMAGE_REF
make_image || die "could not make the busybox image"
archive=$W/image/busybox-archive.tar

# --- berth ---------------------------------------------------------------------------------
BERTH=("$berth_bin" --data-root "$W/berth-data" --root "$W/berth-run")
have_engine=0
if "$berth_bin" container --help >/dev/null 2>&1; then
    have_engine=1
    on_exit 'ids=$("${BERTH[@]}" container ls -aq); [ -z "$ids" ] || "${BERTH[@]}" container rm -f $ids'
    "${BERTH[@]}" load -i "$archive" >/dev/null
else
    say "this berth has no engine (berth container): podman and Docker only"
fi

# --- podman (as scripts/clients/podman.sh sets it up) ---------------------------------------
own_host_paths /run/containers /var/lib/containers /run/libpod
own_cgroups libpod_parent
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

# --- a private dockerd (scripts/clients/lib.sh) ---------------------------------------------
bench_dockerd
"${DOCKER[@]}" load -i "$archive" >/dev/null

# --- one container: run --rm true -------------------------------------------------------------
engines=()
declare -A run_cmd ls_cmd start_cmd
if [ $have_engine = 1 ]; then
    engines+=(berth)
    run_cmd[berth]="${BERTH[*]} container run --rm --network none $IMG true"
    ls_cmd[berth]="${BERTH[*]} container ls"
    start_cmd[berth]="${BERTH[*]} container run -d --network none $IMG sleep 100000"
fi
engines+=(podman docker)
run_cmd[podman]="${PODMAN[*]} run --rm --network none $IMG true"
ls_cmd[podman]="${PODMAN[*]} ps"
start_cmd[podman]="${PODMAN[*]} run -d --network none $IMG sleep 100000"
run_cmd[docker]="${DOCKER[*]} run --rm --network none $IMG true"
ls_cmd[docker]="${DOCKER[*]} ps"
start_cmd[docker]="${DOCKER[*]} run -d --network none $IMG sleep 100000"

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


# --- many containers at once ------------------------------------------------------------------
# The pids of the per-container processes of an engine, from their command lines.
holders() {
    case $1 in
    berth) pgrep -f -- "$W/berth-" | while read -r p; do
               # berth's monitors: processes of berth's binary that are not a berth command
               # still running (those have a parent in this script's session).
               [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$berth_bin" ] && echo "$p"
           done ;;
    podman) pgrep -f -- "^/usr/bin/conmon .*$W/" ;;
    docker) pgrep -f -- "^containerd-shim.*$W/|^/usr/bin/containerd-shim.*$W/" ;;
    esac
}
mem_of() { # PIDS...: "count pss_kib rss_kib"
    local p pss=0 rss=0 n=0 a b
    for p in "$@"; do
        read -r a b < <(awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {print p + 0, r + 0}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
        pss=$((pss + a)); rss=$((rss + b)); n=$((n + 1))
    done
    echo "$n $pss $rss"
}

declare -A start_ms count pss rss ls_ms
for e in "${engines[@]}"; do
    say "$e: $many containers running busybox sleep"
    t0=$(date +%s%N)
    for i in $(seq "$many"); do
        ${start_cmd[$e]} >/dev/null || die "$e: container $i did not start"
    done
    start_ms[$e]=$((($(date +%s%N) - t0) / 1000000))
    sleep 2
    read -r count[$e] pss[$e] rss[$e] < <(mem_of $(holders "$e"))
    hyperfine -N --warmup 1 --runs 10 --export-json "$W/ls-$e.json" -n "$e" "${ls_cmd[$e]}" >/dev/null
    ls_ms[$e]=$(median "$W/ls-$e.json" "$e")
    say "$e: ${count[$e]} holders, Pss ${pss[$e]} KiB, Rss ${rss[$e]} KiB; ls ${ls_ms[$e]} ms"
    case $e in
    berth) ids=$("${BERTH[@]}" container ls -aq); [ -z "$ids" ] || "${BERTH[@]}" container rm -f $ids >/dev/null ;;
    podman) "${PODMAN[@]}" rm -af -t 0 >/dev/null ;;
    docker) "${DOCKER[@]}" rm -f $("${DOCKER[@]}" ps -aq) >/dev/null ;;
    esac
done

ref=podman
out=$W/table.md
{
    echo "| engine | run --rm true median (ms) | vs $ref | $many started (s) | per-container processes | their Pss (KiB) | vs $ref | per container (KiB) | their Rss (KiB) | ls with $many (ms) | vs $ref |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    ref_run=$(median "$W/run.*.json" $ref)
    for e in "${engines[@]}"; do
        r=$(median "$W/run.*.json" "$e")
        per=$([ "${count[$e]}" -gt 0 ] && echo $((pss[$e] / count[$e])) || echo -)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$e" "$r" "$(ratio "$r" "$ref_run")" \
            "$(python3 -c "print(f'{${start_ms[$e]} / 1000:.1f}')")" "${count[$e]}" "${pss[$e]}" "$(ratio "${pss[$e]}" "${pss[$ref]}")" \
            "$per" "${rss[$e]}" "${ls_ms[$e]}" "$(ratio "${ls_ms[$e]}" "${ls_ms[$ref]}")"
    done
} >"$out"
cat "$out"
mkdir -p "$top/bench/results"
dest=$top/bench/results/engine-$(date -u +%Y-%m-%d).md
{
    echo "# berth engine benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
    echo
    echo "busybox image, --network none; podman $(podman --version | awk '{print $3}') and Docker $(dockerd --version | awk '{print $3}' | tr -d ,) on runc $(runc --version | awk 'NR == 1 {print $3}');"
    echo "run: medians of $((per_round * rounds)) runs in $rounds rounds; memory: the per-container processes"
    echo "(berth's monitors, conmon, containerd-shim-runc-v2) with $many containers running."
    echo
    cat "$out"
} >"$dest"
say "written to ${dest#"$top"/}"
