#!/bin/sh
# containerd's CRI plugin with SystemdCgroup = true, run INSIDE the systemd VM by
# scripts/vm-systemd-test.sh: the CRI test (tests/cri.rs, its executable given to the VM as
# VM_CRI_TEST) with BERTH_CRI_SYSTEMD=1, so that the shim runs berth with --systemd-cgroup and
# each pod and container is a scope in the pod's slice; the test checks the scopes come and go.
T=/vm/files/cri-test
if [ ! -x "$T" ]; then
    echo "skip cri-systemd: no CRI test executable given (VM_CRI_TEST)"
    exit 0
fi
# containerd's own service stays off: the test runs a containerd of its own.
systemctl stop containerd.service 2>/dev/null
out=$(BERTH_CRI_SYSTEMD=1 BERTH_CRI_BERTH="$BERTH" BERTH_CRI_ROOTFS="$ROOTFS" \
    BERTH_CRI_PAUSE=/vm/files/pause RUST_BACKTRACE=0 "$T" --exact cri_pod_lifecycle_through_berth 2>&1)
rc=$?
if [ $rc = 0 ] && printf '%s\n' "$out" | grep -q '^test result: ok. 1 passed'; then
    echo "ok cri-systemd"
else
    printf '%s\n' "$out" | grep -v '^ *at \|^ *[0-9]*: ' | tail -n 25
    echo "FAIL cri-systemd: the CRI test failed with SystemdCgroup = true (status $rc)"
fi
