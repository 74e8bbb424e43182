#!/bin/bash
# usage: pair.sh c  PORT N VARIANTS [rounds_per_variant] [rate] [size]   (C sender)
#        pair.sh py PORT N VARIANTS [rounds_per_variant] [rate] [size]   (Python+uvloop sender)
# Sender pinned to core 0, drain (receiver) pinned to core 1. Wrap in: flock /tmp/bench.lock ./pair.sh ...
cd "$(dirname "$0")"
KIND=$1; PORT=$2; N=$3; shift 3
CTL=/dev/shm/sendfloor.$PORT.ctl
rm -f "$CTL"
if [ "$KIND" = py ]; then
  taskset -c 0 "${PYTHON:-python3}" pysend.py "$PORT" "$N" "$CTL" "$@" & SP=$!
else
  taskset -c 0 ./sender "$PORT" "$N" "$CTL" "$@" & SP=$!
fi
taskset -c 1 ./drain "$PORT" "$N" "$CTL" & DP=$!
trap 'kill $SP $DP 2>/dev/null' EXIT INT TERM
wait $SP; RS=$?
wait $DP
rm -f "$CTL"
exit $RS
