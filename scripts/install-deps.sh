#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever the connector needs to build
# and run (and, with --test, to run its tests). Only missing packages are
# installed; nothing is downloaded from anywhere else.
set -euo pipefail

pkgs=(build-essential cmake pkg-config ca-certificates curl openssl python3 sqlite3
      libsqlite3-dev libcjson-dev libyaml-dev libmicrohttpd-dev libgnutls28-dev libssl-dev libcurl4-openssl-dev
      libpq-dev libpg-query-dev libmariadb-dev libmongoc-dev libbson-dev)
if [ "${1:-}" = "--test" ]; then
  # python3-pymongo and python3-mongomock: the MongoDB wire-protocol test server
  # (tests/support/mongo_server.py), no mongod can be installed from Debian; python3-croniter:
  # the cron parser's differential test; python3-prometheus-client: Prometheus' own parser reads
  # GET /metrics in tests/e2e/test_metrics.py
  # python3-yaml, man-db, systemd (systemd-analyze, offline) and dpkg-dev (dpkg-shlibdeps, from
  # build-essential): the packaging tests check docker-compose.yml, render the man page, verify
  # the unit and build the .deb; python3-kubernetes (the official client's object model) and
  # haproxy (`haproxy -c`): they check deploy/kubernetes/ and deploy/haproxy/ without a cluster
  pkgs+=(libcmocka-dev clang-14 libclang-rt-14-dev valgrind postgresql-15 mariadb-server
         mariadb-client python3-pymongo python3-mongomock python3-croniter python3-prometheus-client
         python3-yaml man-db systemd dpkg-dev python3-kubernetes haproxy)
  # kubernetes-client (kubectl 1.20): `kubectl kustomize` renders deploy/kubernetes/ offline.
  # Only where no kubectl is installed: another package's kubectl may own /usr/bin/kubectl, and
  # the two cannot be installed together
  command -v kubectl >/dev/null || pkgs+=(kubernetes-client)
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
# Nor may mariadb-server start a system server on port 3306, nor haproxy a service (the tests
# only run `haproxy -c`): while the packages install, a policy-rc.d that answers 101 tells their
# scripts not to start services.
policy=/usr/sbin/policy-rc.d
added_policy=""
if printf '%s\n' "${missing[@]}" | grep -qxE 'mariadb-server|haproxy' && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  added_policy=1
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
if [ -n "$added_policy" ]; then
  $sudo rm -f "$policy"
  trap - EXIT
fi
