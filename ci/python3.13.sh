#!/usr/bin/env bash
# Python 3.13 for CI, built from Debian trixie's source package (bookworm, this machine's Debian,
# ships only 3.11, and trixie's binary packages need a newer libc). Uses an apt state of its own,
# so the system's apt configuration is untouched. Prints the interpreter's path.
#
#     ci/python3.13.sh [prefix]        # default /opt/python3.13; does nothing if it is there
set -euo pipefail
prefix=${1:-/opt/python3.13}
if [ -x "$prefix/bin/python3.13" ]; then
    echo "$prefix/bin/python3.13"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$work/sources.list"
apt=(apt-get -qq -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache")
"${apt[@]}" update >&2
(cd "$work" && "${apt[@]}" source --download-only python3.13 >&2)
tar -xf "$(ls "$work"/python3.13_*.orig.tar.* | grep -v "\.asc$")" -C "$work"
cd "$work"/Python-3.13*/
# Headers the build needs for ssl, sqlite, ctypes, lzma, bz2, readline (present on most machines).
if ! dpkg -s libssl-dev libffi-dev zlib1g-dev libsqlite3-dev libbz2-dev liblzma-dev >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-get install -y -qq libssl-dev libffi-dev zlib1g-dev libsqlite3-dev libbz2-dev liblzma-dev libreadline-dev >&2
fi
# No test suite (Lib/test): not needed to run ours, and a third of the install.
./configure --prefix="$prefix" --quiet --disable-test-modules >&2
make -s -j"$(nproc)" >&2
make -s altinstall >&2
echo "$prefix/bin/python3.13"
