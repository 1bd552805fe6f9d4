#!/usr/bin/env bash
# Stops what tests/servers/start.sh started.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${GALLRA_SERVERS_DIR:-$here/.run}
for pidfile in "$state"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    # weed mini starts its components as children: stop the whole group.
    pkill -TERM -P "$pid" 2>/dev/null
    kill -TERM "$pid" 2>/dev/null
    rm -f "$pidfile"
done
exit 0
