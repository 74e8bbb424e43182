#!/bin/bash
# Full measurement set. Every timed run is a separate `flock /tmp/bench.lock` invocation of < 1 min.
# usage: ./run_all.sh [outdir=results]     (takes ~6-7 min in total)
cd "$(dirname "$0")"
OUT=${1:-results}; mkdir -p "$OUT"
L="flock /tmp/bench.lock"
run() { local name=$1; shift; echo "== $name: $*" | tee -a "$OUT/all.txt"; $L "$@" 2>&1 | tee "$OUT/$name.txt" >> "$OUT/all.txt"; }
{ date; grep -m1 'model name' /proc/cpuinfo; uname -r; nproc; cat /sys/devices/system/cpu/cpuidle/current_driver; } > "$OUT/sysinfo.txt"
# 1. floor vs connection count (send = plain C; write+nodelay = exactly what uvloop does; null = bare syscall)
for N in 1000 5000 10000; do run floor_$N ./pair.sh c 29$((100+N/1000)) $N send,write+nodelay,null; done
# 2. Python + uvloop sender (uv = transport.write; oswrite = os.write on the same fds)
for N in 1000 5000 10000; do run py_$N ./pair.sh py 29$((120+N/1000)) $N uv,oswrite,cwrite; done
# 3. variants at 10k, interleaved with the baseline
run opts_10000    ./pair.sh c 29141 10000 send,nodelay,sndbuf=4096,sndbuf=16777216,busy,defer
run methods_10000 ./pair.sh c 29142 10000 send,write,dontwait,writev,writev2,uring,uringfix
run pyvar_10000   ./pair.sh py 29143 10000 uv,cwrite,uv+nagle,uv+busy,uv+defer
# 4. loopback receive half moved to the receiver's core (RPS, private netns only)
run rps_10000     ./netns.sh ./pair.sh c 29144 10000 send,rps,busy,rps+busy,defer
run pyrps_10000   ./netns.sh ./pair.sh py 29145 10000 uv,cwrite,uv+rps,cwrite+rps,uv+defer
