#!/usr/bin/env bash
# Makes sure the named commands exist, installing their Debian packages
# when they are missing and this runs as root with apt-get:
#
#   scripts/install-tools.sh wrk gnuplot=gnuplot-nox
#
# Each argument is COMMAND or COMMAND=PACKAGE (the package when its name is
# not the command's). Used by CI; a developer may run it or install by hand.
set -euo pipefail

missing=()
for wanted in "$@"; do
    command="${wanted%%=*}"
    package="${wanted#*=}"
    command -v "$command" >/dev/null || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-tools: missing ${missing[*]}; install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 2
fi
echo "install-tools: installing Debian's ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Services a package would start (nginx on port 80) stay stopped: the tests
# start their own. policy-rc.d's 101 is "action forbidden".
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
