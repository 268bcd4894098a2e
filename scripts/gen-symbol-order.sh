#!/usr/bin/env bash
# Regenerates scripts/symbol-order.txt: the functions a container's start runs, which the
# release link (Makefile, --symbol-ordering-file) puts first in .text so that they share pages.
# Every page of code touched becomes resident, and the kernel maps 64 KiB around each fault:
# scattered, the start's ~1200 functions make the whole 2.5 MB of code resident; together,
# about 600 KB. Measured: peak RSS of `berth run` 3.95 MB before, 2.0 MB after.
#
# How: scripts/trace-code.py single-steps berth (and the processes it forks, until they exec)
# through `run`, `create`+`start` and `delete` of a busybox bundle, records every instruction
# address, and maps them to functions with nm. Rerun after changes to the start path
# (`make symbol-order`); a stale entry only costs locality (the link does not warn).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
say() { printf '== %s\n' "$*"; }

if [ "${1:-}" != "--inside" ]; then
    say "building berth (release)"
    make --no-print-directory build >/dev/null
    scripts/mkrootfs.sh bundles/busybox/rootfs >/dev/null
    exec unshare -m "$0" --inside
fi

umount /sys/fs/cgroup/unified 2>/dev/null || true
work=$(mktemp -d /tmp/berth-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
bin=$top/target/release/berth
mkdir -p "$work/bundle"
cp -a bundles/busybox/rootfs "$work/bundle/rootfs"
"$bin" spec --bundle "$work/bundle"
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$work/bundle/config.json"
r="$bin --root $work/root"
say "tracing run, create+start, delete (single-stepped: a few minutes)"
python3 scripts/trace-code.py "$work/run.txt" $r run --bundle "$work/bundle" t1
$r create --bundle "$work/bundle" t2
python3 scripts/trace-code.py "$work/start.txt" $r start t2
python3 scripts/trace-code.py "$work/delete.txt" $r delete t2
nm -S "$bin" | python3 -c '
import sys, bisect
syms = sorted((int(p[0], 16), int(p[1], 16), p[3]) for p in (l.split() for l in sys.stdin)
              if len(p) == 4 and p[2] in "tTwW")
starts = [s[0] for s in syms]
hot = {}
for name in sys.argv[1:]:
    for line in open(name):
        a = int(line, 16)
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and syms[i][0] <= a < syms[i][0] + max(syms[i][1], 1):
            hot[syms[i][2]] = syms[i][0]
order = sorted(hot, key=hot.get)
open("scripts/symbol-order.txt", "w").write("\n".join(order) + "\n")
print(f"{len(order)} functions", file=sys.stderr)
' "$work/run.txt" "$work/start.txt" "$work/delete.txt"
say "written to scripts/symbol-order.txt"
