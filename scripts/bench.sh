#!/usr/bin/env bash
# Start-up benchmark: berth against crun and runc (whichever are installed) and the floor
# (unshare + chroot), on a busybox bundle whose process is /bin/true.
#
# Everything runs inside one `unshare -m` with /sys/fs/cgroup/unified unmounted there, because
# crun refuses hybrid cgroup hosts: all runtimes see the same host, for a fair comparison.
# The bundle says ociVersion 1.0.2 because crun 1.8 rejects newer versions.
# Prints a table of medians and ratios, and writes it to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

runs=${BENCH_RUNS:-40}
say() { printf '== %s\n' "$*"; }

if [ "${1:-}" != "--inside" ]; then
    command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
    say "building berth (release)"
    make --no-print-directory build >/dev/null
    # The link places functions by name; a build whose symbol names changed (new
    # dependencies or features change every hash) is laid out by a stale order.
    found=$(nm target/release/berth | awk 'NR==FNR {want[$1]; next} $NF in want {n++} END {print n+0}' scripts/symbol-order.txt -)
    total=$(grep -c . scripts/symbol-order.txt)
    if [ $((found * 10)) -lt $((total * 9)) ]; then
        echo "bench: only $found of the $total functions in scripts/symbol-order.txt are in the binary:" \
             "run 'make symbol-order' (the peak RSS measured here would be too high)" >&2
    fi
    say "making the bench bundle"
    scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null
    exec unshare -m "$0" --inside
fi

# Inside our own mount namespace from here on.
umount /sys/fs/cgroup/unified 2>/dev/null || true
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
# The runtimes' state directories (--root) on a tmpfs, where /run/runc, /run/crun and
# /run/berth are on most hosts. (This VM's /run is on its ext4 root, where making and removing
# a container's state directory costs about 0.4 ms of journalling, the same for each runtime.)
state=$work/state
mkdir -p "$state"
mount -t tmpfs -o mode=0700 tmpfs "$state"
trap 'umount "$state" 2>/dev/null; rm -rf "$work"' EXIT
bundle=$work/bundle
mkdir -p "$bundle"
cp -a bundles/busybox/rootfs "$bundle/rootfs"
"$top/target/release/berth" spec --bundle "$bundle"
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' -e 's/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/' "$bundle/config.json"
grep -q '"/bin/true"' "$bundle/config.json" || { echo "bench: could not set the process" >&2; exit 1; }

declare -A bin
bin[berth]=$top/target/release/berth
for rt in crun runc; do
    if command -v $rt >/dev/null; then bin[$rt]=$(command -v $rt); fi
done
order=(berth)
for rt in crun runc; do [ -n "${bin[$rt]:-}" ] && order+=("$rt"); done

floor="unshare --fork --pid --mount --uts --ipc --net chroot $bundle/rootfs /bin/true"
# No shell between hyperfine and the commands (-N): under load hyperfine's correction for a
# shell's start-up is unreliable. The three-command sequence runs under /bin/sh -c for every
# runtime alike (its start-up counts against all of them).
args=()
for rt in "${order[@]}"; do
    args+=(-n "$rt run" "${bin[$rt]} --root $state/root-$rt run --bundle $bundle bench-$rt")
done
for rt in "${order[@]}"; do
    r="${bin[$rt]} --root $state/root-$rt"
    args+=(-n "$rt create+start+delete" "/bin/sh -c '$r create --bundle $bundle cs-$rt && $r start cs-$rt && $r delete --force cs-$rt'")
done
args+=(-n "floor" "$floor")

# hyperfine runs one command's batch after the other: on a shared machine the neighbours'
# load then falls on some commands more than others. In rounds, every command is measured
# across the same span of time; the medians are over all rounds' runs.
rounds=8
per_round=$(( (runs + rounds - 1) / rounds ))
say "hyperfine: $((per_round * rounds)) runs each, in $rounds rounds, after warm-up (${order[*]} and the floor)"
for r in $(seq "$rounds"); do
    hyperfine -N --warmup 3 --runs "$per_round" --export-json "$work/hf.$r.json" "${args[@]}" >/dev/null
done

many() { # runtime count parallel?
    local rt=$1 n=$2 par=$3 start end
    start=$(date +%s%N)
    if [ "$par" = 1 ]; then
        for i in $(seq "$n"); do "${bin[$rt]}" --root "$state/root-$rt" run --bundle "$bundle" "p$i" & done
        wait
    else
        for i in $(seq "$n"); do "${bin[$rt]}" --root "$state/root-$rt" run --bundle "$bundle" "s$i"; done
    fi
    end=$(date +%s%N)
    left=$(ls "$state/root-$rt" 2>/dev/null | wc -l)
    [ "$left" = 0 ] || echo "bench: $rt left $left containers behind" >&2
    echo $(( (end - start) / 1000000 ))
}

declare -A seq100 par50 rss
for rt in "${order[@]}"; do
    say "$rt: 100 sequential, 50 parallel, peak RSS"
    seq100[$rt]=$(many "$rt" 100 0)
    par50[$rt]=$(many "$rt" 50 1)
    rss[$rt]=$( { /usr/bin/time -v "${bin[$rt]}" --root "$state/root-$rt" run --bundle "$bundle" rss >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
done
rss[floor]=$( { /usr/bin/time -v $floor; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')

# System calls of one run, every process counted (strace -f -c), where strace is installed.
declare -A calls
for rt in "${order[@]}"; do
    calls[$rt]=-
    if command -v strace >/dev/null; then
        strace -f -c -o "$work/strace-$rt" "${bin[$rt]}" --root "$state/root-$rt" run --bundle "$bundle" strace >/dev/null 2>&1 || true
        calls[$rt]=$(awk '$NF == "total" {print $4 + 0}' "$work/strace-$rt" 2>/dev/null || echo -)
    fi
done

median() { python3 -c "
import glob, json, statistics, sys
times = [t for f in glob.glob('$work/hf.*.json') for r in json.load(open(f))['results'] if r['command'] == sys.argv[1] for t in r['times']]
print(statistics.median(times) * 1000)" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}') if b else print('-')" "$1" "$2"; }

floor_ms=$(median floor)
ref=${order[1]:-berth}
out=$work/table.md
{
    echo "| runtime | run median (ms) | vs $ref | vs floor | create+start+delete (ms) | vs $ref | 100 sequential (ms) | vs $ref | 50 parallel (ms) | vs $ref | peak RSS (KiB) | vs $ref | syscalls of a run |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    ref_run=$(median "$ref run"); ref_csd=$(median "$ref create+start+delete")
    for rt in "${order[@]}"; do
        r=$(median "$rt run"); c=$(median "$rt create+start+delete")
        printf '| %s | %.2f | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$rt" "$r" "$(ratio "$r" "$ref_run")" "$(ratio "$r" "$floor_ms")" \
            "$c" "$(ratio "$c" "$ref_csd")" "${seq100[$rt]}" "$(ratio "${seq100[$rt]}" "${seq100[$ref]}")" \
            "${par50[$rt]}" "$(ratio "${par50[$rt]}" "${par50[$ref]}")" "${rss[$rt]}" "$(ratio "${rss[$rt]}" "${rss[$ref]}")" "${calls[$rt]}"
    done
    printf '| floor (unshare+chroot) | %.2f | | 1.00 | | | | | | | %s | | |\n' "$floor_ms" "${rss[floor]}"
} > "$out"
cat "$out"
mkdir -p "$top/bench/results"
dest="$top/bench/results/$(date -u +%Y-%m-%d).md"
{ echo "# berth start-up benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"; echo; echo "busybox bundle running /bin/true; medians of $((per_round * rounds)) runs in $rounds rounds, each after 3 warm-up runs."; echo; cat "$out"; } > "$dest"
say "written to ${dest#$top/}"
