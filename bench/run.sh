#!/usr/bin/env bash
# One-command end-to-end benchmark (issue 9): builds the release gateway and
# runs bench/bench.rs (mosquitto + `wardgate-sim load` + `wardgate run` + an
# MQTT subscriber).
# Arguments pass through, e.g.:
#   bench/run.sh --devices 100,1000,10000 --duration 30 --sweep-intervals 500,250,100
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wardgate -p wardgate-sim
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -h | awk '/Mem:/ {print $2}') RAM"
exec cargo run --release -q -p wardgate-e2e --example bench -- "$@"
