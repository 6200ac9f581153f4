#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever the connector needs to build
# and run (and, with --test, to run its tests). Only missing packages are
# installed; nothing is downloaded from anywhere else.
set -euo pipefail

pkgs=(build-essential cmake pkg-config ca-certificates curl openssl python3 sqlite3
      libsqlite3-dev libcjson-dev libyaml-dev libmicrohttpd-dev libssl-dev libcurl4-openssl-dev
      libpq-dev libpg-query-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(libcmocka-dev clang-14 libclang-rt-14-dev valgrind postgresql-15 python3-croniter)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo; missing: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
# The tests start throwaway PostgreSQL clusters of their own: the package must
# not create and start a system cluster on port 5432.
if printf '%s\n' "${missing[@]}" | grep -qx postgresql-15; then
  $sudo mkdir -p /etc/postgresql-common
  grep -qsx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf ||
    echo 'create_main_cluster = false' | $sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
