#!/usr/bin/env bash
# Pull benchmark: pulling and unpacking a 3-layer image of about 100 MB (compressed) from a
# local registry, `berth pull` (fetch, verify, unpack into snapshots) against
# `skopeo copy docker://... oci:DIR` + `umoci unpack` of it, side by side with hyperfine.
#
# The image is made here: the busybox rootfs plus three layers of generated files (part random,
# part base64 text, so they compress as real layers do a little), built with umoci and put in a
# registry (Debian's docker-registry on 127.0.0.1, scripts/registry.sh) by skopeo.
# Prints the medians and the ratio, and writes them to bench/results/pull-DATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

runs=${BENCH_PULL_RUNS:-5}
say() { printf '== %s\n' "$*"; }

for tool in hyperfine skopeo umoci docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "bench-pull: $tool is missing (see .ci/run)" >&2; exit 1; }
done
[ -x bundles/busybox/rootfs/bin/busybox ] || scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null

say "building berth (release)"
make --no-print-directory build >/dev/null  # the same static binary as make build
berth=$top/target/release/berth

work=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
registry=$work/registry
cleanup() {
    scripts/registry.sh stop "$registry" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
addr=$(scripts/registry.sh start "$registry")
say "registry at $addr (storage in $registry)"

say "making the image: busybox + 3 layers of generated files"
src=$work/src
umoci init --layout "$src"
umoci new --image "$src:bench"
umoci insert --image "$src:bench" bundles/busybox/rootfs /
for layer in 1 2 3; do
    dir=$work/layer$layer
    mkdir -p "$dir"
    for f in 1 2 3 4; do
        # 6 MiB random (incompressible) + 4 MiB of base64 text (compresses to ~3/4) a file.
        # Sizes are whole tar blocks: umoci 0.4.7 leaves out the padding after a layer's last
        # file, which berth's unpacker (unlike Go's archive/tar) refuses.
        head -c $((6 << 20)) /dev/urandom > "$dir/random$f.bin"
        head -c $((3 << 20)) /dev/urandom | base64 -w 0 > "$dir/text$f.txt"
    done
    umoci insert --image "$src:bench" "$dir" "/data/layer$layer"
    rm -rf "$dir"
done
umoci config --image "$src:bench" --config.cmd /bin/sh
image=$addr/bench/big:v1
skopeo copy --quiet --dest-tls-verify=false "oci:$src:bench" "docker://$image"
rm -rf "$src"
size_mb=$(du -sm "$registry/data" | cut -f1)
say "pushed $image ($size_mb MB in the registry)"

berth_root=$work/berth-root
oci=$work/oci
unpacked=$work/unpacked
berth_cmd="$berth --data-root $berth_root pull -q --tls-verify=false $image"
skopeo_cmd="skopeo copy --quiet --src-tls-verify=false docker://$image oci:$oci:v1 && umoci unpack --image $oci:v1 $unpacked"

say "checking both work once"
eval "$berth_cmd" >/dev/null
[ -f "$berth_root/image/index.json" ] || { echo "bench-pull: berth pull stored nothing" >&2; exit 1; }
eval "$skopeo_cmd" >/dev/null
[ -x "$unpacked/rootfs/bin/busybox" ] || { echo "bench-pull: umoci unpacked nothing" >&2; exit 1; }

say "hyperfine: $runs runs each, every run from an empty store"
hyperfine --warmup 1 --runs "$runs" --export-json "$work/hf.json" \
    --prepare "rm -rf $berth_root" -n "berth pull" "$berth_cmd" \
    --prepare "rm -rf $oci $unpacked" -n "skopeo copy + umoci unpack" "$skopeo_cmd"

read -r berth_ms skopeo_ms ratio < <(python3 - "$work/hf.json" <<'PY'
import json, sys
results = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
b, s = results["berth pull"], results["skopeo copy + umoci unpack"]
print(f"{b:.0f} {s:.0f} {b / s:.2f}")
PY
)
verdict=$(python3 -c "import sys; print('met' if float(sys.argv[1]) <= 1.0 else 'NOT met')" "$ratio")

out=$work/table.md
{
    echo "| command | median (ms) | vs skopeo + umoci |"
    echo "| --- | --- | --- |"
    echo "| berth pull (fetch + verify + unpack) | $berth_ms | $ratio |"
    echo "| skopeo copy to an OCI layout + umoci unpack | $skopeo_ms | 1.00 |"
    echo
    echo "Target (berth at most the time of skopeo + umoci): $verdict."
} > "$out"
cat "$out"
mkdir -p "$top/bench/results"
dest="$top/bench/results/pull-$(date -u +%Y-%m-%d).md"
{
    echo "# berth pull benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -r), $(nproc) cores"
    echo
    echo "A 3-layer image plus the busybox rootfs, $size_mb MB in the registry (docker-registry on"
    echo "127.0.0.1, plain HTTP); medians of $runs runs after one warm-up, each from an empty store."
    echo
    cat "$out"
} > "$dest"
say "written to ${dest#$top/}"
