#!/bin/sh
# Runs the test scripts in the systemd VM (berth-vmtest.service), prints the summary line
# scripts/vm-systemd-test.sh looks for, and powers off.
. /vm/env
export BERTH=/vm/bin/$RT_NAME ROOTFS=/vm/rootfs VM_TESTS_DIR=/vm/tests
export PATH=/vm/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
echo "vmtest: $(systemctl --version | head -n 1), pid 1 is $(cat /proc/1/comm), kernel $(uname -r), $(stat -fc %T /sys/fs/cgroup)"
[ -d /sys/fs/cgroup/unified ] && echo "vmtest: hybrid: cgroup v2 at /sys/fs/cgroup/unified"
modprobe overlay || echo "vmtest: cannot load overlay"
passed=0; failed=0; skipped=0
cd /tmp
for t in /vm/tests/*; do
    name=${t##*/}
    echo "vmtest: running $name"
    out=/tmp/vmtest-out.$name
    rm -f /tmp/vmtest-rc
    { timeout -k 5 900 sh "$t" </dev/null 2>&1; echo $? > /tmp/vmtest-rc; } | tee "$out"
    rc=$(cat /tmp/vmtest-rc)
    p=$(grep -c '^ok ' "$out"); f=$(grep -c '^FAIL ' "$out"); s=$(grep -c '^skip ' "$out")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then echo "FAIL $name: exited with status $rc"; f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    echo "vmtest: result $name: $p passed, $f failed, $s skipped"
done
echo "VMTEST-DONE passed=$passed failed=$failed skipped=$skipped"
sync
systemctl poweroff --force --force
