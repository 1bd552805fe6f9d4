#!/usr/bin/env bash
# Stops what tests/servers/start.sh started, and waits until it has: a
# server still shutting down (moto can take seconds) would hold its port
# and its folder past the run. What has not exited 15 seconds after
# SIGTERM is killed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${GALLRA_SERVERS_DIR:-$here/.run}
pids=()
for pidfile in "$state"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # weed mini starts its components as children: stop the whole group.
    for child in $(pgrep -P "$pid" 2>/dev/null); do
        pids+=("$child")
    done
    pids+=("$pid")
    pkill -TERM -P "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    rm -f "$pidfile"
done
for _ in $(seq 150); do
    alive=0
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && exit 0
    sleep 0.1
done
for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null
done
exit 0
