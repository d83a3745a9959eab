#!/usr/bin/env bash
# Stop what tools/slurm/start.sh STATE_DIR started (the pids listed in STATE_DIR/started), nothing else.
set -uo pipefail
state=${1:?usage: tools/slurm/stop.sh STATE_DIR}
[ -f "$state/started" ] || exit 0
# slurmd before slurmctld before munged: the reverse of the start order
tac "$state/started" | while read -r name pid; do
    if [ "$name" = link ]; then
        [ "$(readlink "$pid")" = "$state/slurm.conf" ] && rm -f "$pid" && echo "removed $pid" >&2
    elif kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "stopped $name ($pid)" >&2
    fi
done
rm -f "$state/started"
