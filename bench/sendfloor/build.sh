#!/bin/bash
# Build everything. Needs gcc and liburing-dev (apt-get update && apt-get install -y liburing-dev).
cd "$(dirname "$0")" && set -e
gcc -O2 -Wall -o sender sender.c -luring
gcc -O2 -Wall -o drain drain.c
gcc -O2 -shared -fPIC -o libsendall.so libsendall.c
