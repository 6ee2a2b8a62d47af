#!/usr/bin/env bash
# Runs every test of jsonbridge on a fresh machine: installs what the tests need first
# (promtool, from Debian's `prometheus` package), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: installing promtool (Debian package prometheus)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # Only promtool is needed: RUNLEVEL=1 keeps invoke-rc.d from starting the packaged server.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

cargo test --locked "$@"
