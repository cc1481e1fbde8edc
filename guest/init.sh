#!/bin/busybox sh
# PID 1 of the initramfs: load the virtio drivers, mount the shared read-only runtime root with a private
# writable /tmp, and hand PID 1 over to the runtime's agent. Kernel args: fnvm.runtime=node|python|probe.
B=/bin/busybox
$B mount -t devtmpfs dev /dev
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
for m in $($B cat /modules/order); do $B insmod /modules/$m.ko || echo "fnvm-init: insmod $m failed"; done

runtime=
net=
for arg in $($B cat /proc/cmdline); do
  case "$arg" in
    fnvm.runtime=*) runtime=${arg#fnvm.runtime=} ;;
    fnvm.net=*) net=${arg#fnvm.net=} ;;  # ADDRESS/PREFIX,GATEWAY for outbound networking
  esac
done

if [ "$runtime" = probe ]; then
  # Accelerator probe: reaching here proves the kernel boots under this accelerator.
  echo FNVM_PROBE_OK
  $B poweroff -f
fi

# The root disk may take a moment to appear after virtio_blk loads.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do $B usleep 10000; i=$((i+1)); done
$B mkdir -p /newroot
$B mount -t ext4 -o ro,noatime /dev/vda /newroot || { echo "fnvm-init: cannot mount root"; $B poweroff -f; }
$B mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp
for d in dev proc sys; do $B mount --move /$d /newroot/$d; done
$B ip link set lo up
if [ -n "$net" ]; then
  $B ip link set eth0 up
  $B ip addr add "${net%,*}" dev eth0
  $B ip route add default via "${net#*,}"
fi

# Functions run in UTC (the root has no zoneinfo; TZ makes it explicit for every runtime and subprocess).
export TZ=UTC
case "$runtime" in
  node) exec $B switch_root /newroot /usr/bin/node /opt/fnvm/agent.mjs --port fnvm.0 ;;
  python) exec $B switch_root /newroot /usr/bin/python3.11 -u -S /opt/fnvm/agent.py --port fnvm.0 ;;
esac
echo "fnvm-init: unknown runtime '$runtime'"
$B poweroff -f
