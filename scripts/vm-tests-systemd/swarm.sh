#!/bin/sh
# Docker Swarm on berth, run INSIDE the systemd VM by scripts/vm-systemd-test.sh: the client
# suite scripts/clients/swarm.sh (copied to /vm/clients) with its published-port checks
# required (SWARM_NEED_IPVS=1): Debian's kernel has the IPVS that Swarm's routing mesh needs,
# which the hosts the suite otherwise runs on may lack. dockerd is Debian's docker.io, with
# "default-runtime": "berth". On a failure, the end of dockerd's log is shown.
systemctl stop docker.service docker.socket containerd.service 2>/dev/null
# Under qemu's TCG every step of dockerd is slow: a check gets longer than on a host.
CLIENT_RUNTIME=$BERTH ROOTFS=$ROOTFS SWARM_NEED_IPVS=1 CHECK_TIMEOUT=240 CLIENT_KEEP=1 \
    bash /vm/clients/swarm.sh
rc=$?
if [ $rc != 0 ]; then
    tail -n 40 /tmp/berth-clients-swarm-*/dockerd.log | cut -c1-400 | sed 's/^/vmtest: dockerd: /'
fi
rm -rf /tmp/berth-clients-swarm-*
exit $rc
