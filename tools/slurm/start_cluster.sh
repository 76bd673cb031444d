#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, from Debian's packages, for testing the slurm
# profile for real: munge, MariaDB on loopback, slurmdbd (accounting, so that sacct answers), slurmctld
# and slurmd. Idempotent: a running, answering daemon is left alone; run it again to repair a stopped one.
# Every daemon it starts is recorded by PID under $HEADMRI_SLURM_STATE/pids; tools/slurm/stop_cluster.sh
# stops exactly those.
#
# Needs root (daemons, /etc/slurm) and, on first use, apt-get (packages are installed when missing).
# Exit codes: 0 cluster up; 2 not root or foreign SLURM configuration present; 3 install failed;
# 4 a daemon did not come up (its log is printed).
#
# Environment (all optional):
#   HEADMRI_SLURM_STATE   state, logs, PIDs and the database   [/tmp/headmri-slurm]
#   HEADMRI_SLURM_GPUS    GPUs the node offers (count-only when no NVIDIA device exists) [detected, else 1]
#   HEADMRI_SLURM_CTLD_PORT / _SLURMD_PORT / _DBD_PORT / _DB_PORT   [6817 / 6818 / 6819 / 33061]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${HEADMRI_SLURM_STATE:-/tmp/headmri-slurm}"
CTLD_PORT="${HEADMRI_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${HEADMRI_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${HEADMRI_SLURM_DBD_PORT:-6819}"
DB_PORT="${HEADMRI_SLURM_DB_PORT:-33061}"
CONF_DIR=/etc/slurm
MARKER="# headmri single-node test cluster"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
T0=$SECONDS

say() { echo "[start_cluster $((SECONDS - T0))s] $*"; }
die() { local code=$1; shift; echo "start_cluster: $*" >&2; exit "$code"; }

# Wait up to $1 seconds for the command "$2..." to succeed.
wait_for() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.5
    done
}

# The PID recorded for daemon $1, if that process is alive and is still that program.
live_pid() {
    local pidfile="$STATE/pids/$1.pid" pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -d /proc/$pid ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] && echo "$pid"
}

# Start "$3..." as daemon $1 (process name $2) in its own session, record its PID. The command must
# stay in the foreground (no forking), so that $! is the daemon itself.
launch() {
    local name=$1 comm=$2; shift 2
    setsid "$@" </dev/null >>"$STATE/logs/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
    sleep 0.2
    [[ -n "$(live_pid "$name" "$comm")" ]] || fail_with_log "$name" "$STATE/logs/$name.out"
}

fail_with_log() {
    echo "start_cluster: $1 did not come up; last lines of its logs:" >&2
    shift
    for f in "$@" "$STATE/logs/$1.log"; do [[ -f $f ]] && tail -n 30 "$f" >&2; done
    exit 4
}

# --- 0. Preconditions -----------------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die 2 "needs root (it starts system daemons and writes $CONF_DIR); run it with sudo"
if [[ -f $CONF_DIR/slurm.conf ]] && ! grep -q "^$MARKER" "$CONF_DIR/slurm.conf"; then
    die 2 "$CONF_DIR/slurm.conf exists and was not written by this script: refusing to replace a real cluster's configuration"
fi

# --- 1. Packages ----------------------------------------------------------------------------------
missing=()
for exe in slurmctld slurmd sinfo sacct munged slurmdbd mariadbd; do
    command -v "$exe" >/dev/null 2>&1 || [[ -x /usr/sbin/$exe ]] || missing+=("$exe")
done
if ((${#missing[@]})); then
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    command -v apt-get >/dev/null || die 3 "apt-get not found and SLURM is not installed (${missing[*]} missing)"
    mkdir -p "$STATE/logs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq >"$STATE/logs/apt.log" 2>&1 || die 3 "apt-get update failed (see $STATE/logs/apt.log)"
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$STATE/logs/apt.log" 2>&1 \
        || die 3 "apt-get install ${PACKAGES[*]} failed (see $STATE/logs/apt.log)"
    say "installed"
fi
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$STATE"/{pids,logs,ctld,slurmd} "$STATE/mysql" "$STATE/mysqld"
chmod 755 "$STATE"

# --- 2. Configuration -----------------------------------------------------------------------------
HOST="$(hostname -s)"
# The machine's real topology and memory, as slurmd itself measures them.
read -r CPUS BOARDS SOCKETS CORES THREADS REAL_MEMORY < <(
    slurmd -C | awk '/^NodeName/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["CPUs"], v["Boards"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }'
)
DEF_MEM_PER_CPU=$((REAL_MEMORY / CPUS < 2048 ? REAL_MEMORY / CPUS : 2048))

nvidia_devices=(/dev/nvidia[0-9]*)
if [[ -e ${nvidia_devices[0]} ]]; then
    GPUS="${HEADMRI_SLURM_GPUS:-${#nvidia_devices[@]}}"
    GRES_LINES="AutoDetect=off\nNodeName=$HOST Name=gpu File=/dev/nvidia[0-$((GPUS - 1))]"
else
    # slurmd drops a GPU that has no device file, so a machine without one gets stand-in character
    # devices (copies of /dev/null) under the state directory: jobs asking for --gpus=1 are then
    # scheduled, and see no CUDA device (torch falls back to the CPU).
    GPUS="${HEADMRI_SLURM_GPUS:-1}"
    mkdir -p "$STATE/dev"
    for ((i = 0; i < GPUS; i++)); do
        [[ -c $STATE/dev/gpu$i ]] || mknod -m 666 "$STATE/dev/gpu$i" c 1 3
    done
    GRES_LINES="AutoDetect=off\nNodeName=$HOST Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]"
fi

if [[ -s $STATE/db_pass ]]; then
    DB_PASS=$(<"$STATE/db_pass")
else
    DB_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && echo "$DB_PASS" >"$STATE/db_pass")
fi

render() {
    sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@CPUS@|$CPUS|g" -e "s|@BOARDS@|$BOARDS|g" \
        -e "s|@SOCKETS@|$SOCKETS|g" -e "s|@CORES@|$CORES|g" -e "s|@THREADS@|$THREADS|g" \
        -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@GPUS@|$GPUS|g" -e "s|@GRES_LINES@|$GRES_LINES|g" "$1"
}
mkdir -p "$CONF_DIR"
render "$HERE/slurm.conf.in" >"$STATE/slurm.conf"
render "$HERE/gres.conf.in" >"$STATE/gres.conf"
render "$HERE/slurmdbd.conf.in" >"$STATE/slurmdbd.conf"
install -m 644 "$STATE/slurm.conf" "$CONF_DIR/slurm.conf"
install -m 644 "$STATE/gres.conf" "$CONF_DIR/gres.conf"
install -m 644 "$HERE/cgroup.conf" "$CONF_DIR/cgroup.conf"
install -m 600 "$STATE/slurmdbd.conf" "$CONF_DIR/slurmdbd.conf"
rm -f "$STATE/slurmdbd.conf"
say "configuration written to $CONF_DIR (node $HOST: $CPUS CPUs, $REAL_MEMORY MB, $GPUS gpu)"

# --- 3. munge -------------------------------------------------------------------------------------
munge_works() { munge -n | unmunge; }
if ! munge_works >/dev/null 2>&1; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    launch munged munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
    wait_for 20 munge_works || fail_with_log munged /var/log/munge/munged.log
    say "munge started"
fi

# --- 4. MariaDB on loopback, its socket in a directory the mysql user owns -----------------------
DB_SOCKET="$STATE/mysqld/mysqld.sock"
chown mysql:mysql "$STATE/mysql" "$STATE/mysqld"
db_works() { mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping; }
if ! db_works >/dev/null 2>&1; then
    if [[ ! -d $STATE/mysql/mysql ]]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >>"$STATE/logs/mariadb.out" 2>&1 \
            || fail_with_log mariadb "$STATE/logs/mariadb.out"
    fi
    launch mariadbd mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql" \
        --socket="$DB_SOCKET" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --pid-file="$STATE/mysqld/mariadbd.pid" --log-error="$STATE/logs/mariadb.log" \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --max-allowed-packet=16M
    wait_for 60 db_works || fail_with_log mariadbd "$STATE/logs/mariadb.log"
    say "MariaDB started on 127.0.0.1:$DB_PORT"
fi
mariadb --no-defaults --socket="$DB_SOCKET" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

# --- 5. slurmdbd, then the cluster, account and user it knows -------------------------------------
dbd_works() { sacctmgr -n -P list cluster format=cluster; }
if [[ -z "$(live_pid slurmdbd slurmdbd)" ]]; then
    launch slurmdbd slurmdbd slurmdbd -D
fi
wait_for 60 dbd_works || fail_with_log slurmdbd
if ! sacctmgr -n -P list cluster format=cluster | grep -qx headmri; then
    sacctmgr -i add cluster headmri >/dev/null
fi
if ! sacctmgr -n -P list account format=account | grep -qx headmri; then
    sacctmgr -i add account headmri Cluster=headmri Description="headmri tests" Organization=headmri >/dev/null
fi
# root (who submits here) is a member of account headmri, its default: `-A headmri` is then valid, as
# a user's own account is on a real cluster (slurmdbd creates root with only the account "root").
if ! sacctmgr -n -P list assoc user=root format=account | grep -qx headmri; then
    sacctmgr -i add user root Account=headmri >/dev/null
    sacctmgr -i modify user root set DefaultAccount=headmri >/dev/null
fi
say "slurmdbd up on 127.0.0.1:$DBD_PORT"

# --- 6. slurmctld and slurmd ----------------------------------------------------------------------
if [[ -z "$(live_pid slurmctld slurmctld)" ]]; then
    launch slurmctld slurmctld slurmctld -D
else
    scontrol reconfigure >/dev/null 2>&1 || true
fi
wait_for 60 scontrol ping || fail_with_log slurmctld
if [[ -z "$(live_pid slurmd slurmd)" ]]; then
    launch slurmd slurmd slurmd -D -N "$HOST"
fi

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1; }
node_ready() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }
end=$((SECONDS + 60))
until node_ready; do
    ((SECONDS < end)) || fail_with_log slurmd "$STATE/logs/slurmctld.log"
    # A node stopped while registered comes back "down" (or drained); this cluster answers only to us.
    case "$(node_state)" in
        down* | drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
wait_for 30 sacct -n -X -S now || fail_with_log slurmdbd
say "cluster up: node $HOST is $(node_state); sacct answers"
