#!/usr/bin/env bash
# One-command end-to-end benchmark (issue 9): builds the release gateway and
# runs bench/bench.rs (mosquitto + `wardgate run` + an MQTT subscriber).
# Arguments pass through, e.g.:
#   bench/run.sh --devices 100,1000,10000 --duration 30 --sweep-intervals 100,20,10
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p wardgate
echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -h | awk '/Mem:/ {print $2}') RAM"
exec cargo run --release -q -p wardgate-e2e --example bench -- "$@"
