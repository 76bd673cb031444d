#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tools/slurm/start_cluster.sh started: exactly the daemons whose
# PIDs it recorded under $HEADMRI_SLURM_STATE/pids (a PID is signalled only while it still names the
# same program), in reverse start order. Nothing is stopped by name.
#   --purge   also delete the state directory (database, logs) and the configuration files it wrote.
set -euo pipefail

STATE="${HEADMRI_SLURM_STATE:-/tmp/headmri-slurm}"
CONF_DIR=/etc/slurm
MARKER="# headmri single-node test cluster"

stop_daemon() {
    local name=$1 comm=$2 pidfile="$STATE/pids/$1.pid" pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -d /proc/$pid ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            [[ -d /proc/$pid ]] || break
            sleep 0.2
        done
        if [[ -d /proc/$pid ]]; then
            echo "stop_cluster: $name ($pid) ignored SIGTERM for 20 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stop_cluster: stopped $name ($pid)"
    fi
    rm -f "$pidfile"
}

stop_daemon slurmd slurmd
stop_daemon slurmctld slurmctld
stop_daemon slurmdbd slurmdbd
stop_daemon mariadbd mariadbd
stop_daemon munged munged

if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
    if [[ -f $CONF_DIR/slurm.conf ]] && grep -q "^$MARKER" "$CONF_DIR/slurm.conf"; then
        rm -f "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf" "$CONF_DIR/cgroup.conf" "$CONF_DIR/slurmdbd.conf"
    fi
    echo "stop_cluster: removed $STATE and the configuration files in $CONF_DIR"
fi
