#!/bin/bash
# Run a command inside a private network namespace (own lo) with sysfs remounted, so RPS on that lo
# can be toggled without touching the host. usage: flock /tmp/bench.lock ./netns.sh ./pair.sh c 47301 10000 send,rps
cd "$(dirname "$0")"
exec unshare -n -m bash -c 'ip link set lo up && mount -t sysfs sysfs /sys && export RPS_PATH=/sys/class/net/lo/queues/rx-0/rps_cpus && "$@"' netns "$@"
