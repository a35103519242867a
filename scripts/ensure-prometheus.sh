#!/usr/bin/env bash
# Makes sure a Prometheus server binary is installed, for tests/dashboard.rs,
# which starts its own private Prometheus (temp config and data, free port)
# and evaluates every query of the Grafana dashboard against a real warren;
# and promtool (in the same Debian package), with which scripts/check-chart.sh
# checks and unit-tests the chart's alerting rules.
#
#   scripts/ensure-prometheus.sh      check; install the Debian package `prometheus` if needed (root)
#
# Idempotent. It never starts the system's Prometheus service: the package's
# maintainer scripts would start it on :9090 (Warren's own default port), so
# service starts are blocked with a temporary policy-rc.d during the install.
set -euo pipefail

say() { echo "ensure-prometheus: $*"; }
die() { echo "ensure-prometheus: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

find_prometheus() {
    if [ -x /usr/bin/prometheus ]; then
        echo /usr/bin/prometheus
    else
        command -v prometheus || true
    fi
}

find_promtool() {
    if [ -x /usr/bin/promtool ]; then
        echo /usr/bin/promtool
    else
        command -v promtool || true
    fi
}

bin="$(find_prometheus)"
tool="$(find_promtool)"
if [ -n "$bin" ] && "$bin" --version >/dev/null 2>&1 && [ -n "$tool" ] && "$tool" --version >/dev/null 2>&1; then
    say "$("$bin" --version 2>&1 | head -n 1) at $bin, promtool at $tool"
    exit 0
fi

is_root || die "Prometheus is not installed; run: sudo $0" \
    "(or: sudo apt-get install -y --no-install-recommends prometheus)"

# invoke-rc.d asks /usr/sbin/policy-rc.d whether a package may start its
# service; exit code 101 means "no". Put one in place only if there is none,
# and remove only the one we created.
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from warren scripts/ensure-prometheus.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

say "installing the Debian package prometheus (its service is not started)"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus

bin="$(find_prometheus)"
[ -n "$bin" ] || die "installed the prometheus package, but no prometheus binary was found"
[ -n "$(find_promtool)" ] || die "installed the prometheus package, but no promtool was found"
say "installed $("$bin" --version 2>&1 | head -n 1) at $bin"
