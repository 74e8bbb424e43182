#!/bin/bash
# perf profile of core 0 (the sender's core) during a 10k-connection run (C 'send' by default).
# usage: flock /tmp/bench.lock ./profile.sh [kind=c|py] [variant=send] [N=10000]
cd "$(dirname "$0")"
K=${1:-c}; V=${2:-send}; N=${3:-10000}
COMM=sender; [ "$K" = py ] && COMM=python
./pair.sh $K 29150 $N $V 15 5 & P=$!
sleep 2.5   # skip connection setup
perf record -q -C 0 -g -e cpu-clock -F 2000 -o perf.$V.data -- sleep 2.5 2>/dev/null
wait $P
perf report -i perf.$V.data --comm $COMM --no-children --sort symbol --stdio -g none --percent-limit 0.5 2>/dev/null | grep -v "^#" | grep "%" > perf.$V.flat.txt
perf report -i perf.$V.data --comm $COMM --children --sort symbol --stdio -g none --percent-limit 1.5 2>/dev/null | grep -v "^#" | grep "%" > perf.$V.children.txt
