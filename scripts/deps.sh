#!/usr/bin/env bash
# Installs the Debian packages shoal needs to build, test and run, when they are missing.
# As root it runs apt-get; otherwise it prints the exact line to run and fails.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libhiredis-dev libuv1-dev libmsgpack-dev
      libcriterion-dev node-llhttp redis-server redis-tools clang clang-format libclang-rt-14-dev
      curl python3 python3-redis python3-msgpack redis-sentinel libssl-dev libjansson-dev "$@")
# /metrics is validated with promtool (Debian's prometheus package) in tests/test_metrics.c.
pkgs+=(prometheus)
# tests/deploy (make test): HAProxy for the maintenance procedure, PyYAML for the manifests,
# file + dpkg-dev for CPack's dependency list (make package).
pkgs+=(haproxy python3-yaml file dpkg-dev)
# tests/deploy/privsep.py: setcap/getcap for the image's file capabilities, kill for a task.
pkgs+=(libcap2-bin procps)
# tests/page (the Nodes page, ctest nodes_page): headless Chromium, driven by playwright-core
# (tests/page/run.sh runs npm ci; node and npm must be on PATH).
pkgs+=(chromium)
# scripts/bench-instr.sh (make bench): Redis's instructions per task, counted by callgrind.
pkgs+=(valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "shoal: missing packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "shoal: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps Debian's maintainer scripts from starting redis-server/nginx system services:
# shoal starts its own servers on loopback ports and stops only what it started.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
