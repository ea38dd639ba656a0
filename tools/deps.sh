#!/usr/bin/env bash
# Installs the Debian 12 packages a task needs, only those missing.
# Usage: tools/deps.sh build|test|ci
set -euo pipefail

build_pkgs=(gcc make cmake pkg-config lua5.4 liblua5.4-dev
            libcurl4-openssl-dev libssh2-1-dev libssl-dev libsmbclient-dev libpsl-dev libidn2-dev libbz2-dev
            libsqlite3-dev libhiredis-dev)
# lua-cjson: a second JSON reading for some specs (json_spec compares against it) and the plain
# libcurl + lua-cjson program bench/run.sh measures against (the module has its own JSON);
# the fake VirusTotal (python3), its helper (curl), the SSH and SMB servers of the specs,
# the TLS + HTTP/2 front (nginx-light, its throw-away CA by openssl), the forward proxy,
# the Redis of the cache and limiter specs, the sqlite3 shell (a cache locked by another process)
# and locales (JSON numbers under a decimal comma: the de_DE.UTF-8 locale, generated below)
test_pkgs=("${build_pkgs[@]}" lua-cjson lua-busted python3 curl openssh-server openssh-client samba smbclient procps lua-cqueues lua-luv publicsuffix
           nginx-light tinyproxy openssl redis-server sqlite3 locales)
# luarocks: the release rock stage; lua-ldoc and lua-markdown (its Markdown): the API reference
# clang and libclang-rt-14-dev: the fuzz targets (libFuzzer)
ci_pkgs=("${test_pkgs[@]}" valgrind clang libclang-rt-14-dev lua-check git luarocks lua-ldoc lua-markdown)

case "${1:-}" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${test_pkgs[@]}") ;;
  ci) want=("${ci_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|ci" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$1" != build ] && ! locale -a 2>/dev/null | grep -qx 'de_DE.utf8'; then
  echo "generating the de_DE.UTF-8 locale" >&2
  $sudo localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi
