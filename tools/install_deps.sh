#!/bin/sh
# Installs the Debian packages that building and testing sweepd need, when any
# is missing. As root it runs apt-get; otherwise it prints the command to run.
# `install_deps.sh bench` adds what make bench compares against (PyTorch and
# Optuna, several hundred MB).
set -eu
pkgs="build-essential pkg-config libuv1-dev libsqlite3-dev libcjson-dev
libcurl4-openssl-dev libopenblas-dev sqlite3 python3 python3-numpy nginx-light
clang libclang-rt-dev curl ca-certificates"
if [ "${1:-}" = bench ]; then
    pkgs="$pkgs python3-torch python3-optuna"
fi
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
else
    echo "missing Debian packages:$missing"
    echo "run: sudo apt-get install$missing"
    exit 1
fi
