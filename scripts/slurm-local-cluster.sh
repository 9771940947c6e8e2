#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the tests and CI.
#
#   bash scripts/slurm-local-cluster.sh start    # install if needed, configure, start, wait until idle
#   bash scripts/slurm-local-cluster.sh status   # exit 0 when the node answers and accepts jobs
#   bash scripts/slurm-local-cluster.sh stop     # stop slurmd, slurmctld and munged
#   bash scripts/slurm-local-cluster.sh restart
#
# Runs as root. Uses Debian's `slurm-wlm` and `munge` packages (installed with
# apt-get when missing). The configuration goes to /etc/slurm/slurm.conf: job
# steps (`srun` inside a job) do not find a configuration given through
# SLURM_CONF. There is no slurmdbd, hence no `sacct`: use the Snakemake SLURM
# executor with `--slurm-status-command squeue` (see slurm/README.md).
# MinJobAge is large so that squeue still reports finished jobs when the
# executor polls.
#
# Environment (all optional):
#   ADMIN_SLURM_PARTITION   partition name (default: local)
#   ADMIN_SLURM_WAIT_S      seconds to wait for the node to become idle (default: 90)
#
# Every failure ends with a line starting "slurm-local-cluster: error:" and
# the tail of the daemon logs, and a non-zero exit status.
set -euo pipefail

PARTITION=${ADMIN_SLURM_PARTITION:-local}
WAIT_S=${ADMIN_SLURM_WAIT_S:-90}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_KEY=/etc/munge/munge.key

say() { echo "slurm-local-cluster: $*" >&2; }

die() {
    say "error: $*"
    for log in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        if [ -s "$log" ]; then
            echo "---- last lines of $log" >&2
            tail -n 15 "$log" >&2 || true
        fi
    done
    exit 1
}

pid_alive() {
    # pid_alive PIDFILE PROGRAM: the pid file names a live process running PROGRAM
    local pidfile=$1 prog=$2 pid
    [ -s "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -d "/proc/$pid" ] || return 1
    grep -q "$prog" "/proc/$pid/comm" 2>/dev/null
}

stop_pidfile() {
    # stop_pidfile PIDFILE PROGRAM: TERM the process, wait, then KILL it
    local pidfile=$1 prog=$2 pid i
    pid_alive "$pidfile" "$prog" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        [ -d "/proc/$pid" ] || break
        sleep 0.2
    done
    if [ -d "/proc/$pid" ]; then
        say "$prog ($pid) ignored SIGTERM for 10 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts system daemons); try: sudo bash $0 $*"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get: install SLURM (slurmctld, slurmd, sinfo, sbatch, srun) and MUNGE yourself"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (is Debian's package mirror reachable?)"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
        die "apt-get install slurm-wlm munge failed"
    command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 ||
        die "slurm-wlm/munge installed but slurmctld or munged is not on PATH"
}

node_line() {
    # This machine's CPUs and memory, as slurmd detects them.
    local line
    line=$(slurmd -C 2>/dev/null | head -n 1) || true
    [[ $line == NodeName=* ]] || die "'slurmd -C' did not describe this node (got: ${line:-nothing})"
    # Name the node by the short host name and pin it to loopback.
    line=$(sed -E "s/^NodeName=[^ ]+/NodeName=$(hostname -s) NodeAddr=127.0.0.1/" <<<"$line")
    echo "$line State=UNKNOWN"
}

write_config() {
    # Writes the configuration to $1.
    local host
    host=$(hostname -s)
    cat >"$1" <<EOF
# Written by scripts/slurm-local-cluster.sh: a single-node test cluster on localhost.
ClusterName=admin-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# squeue must still list finished jobs when Snakemake polls (it has no sacct here).
MinJobAge=3600
KillWait=10
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$(node_line)
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_ok() {
    pid_alive "$MUNGE_PID" munged && munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    if munge_ok; then return 0; fi
    stop_pidfile "$MUNGE_PID" munged
    if [ ! -s "$MUNGE_KEY" ]; then
        say "creating $MUNGE_KEY"
        install -d -m 0700 -o munge -g munge /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    install -d -m 0755 -o munge -g munge "$MUNGE_RUN" /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" ||
        die "munged did not start"
    local i
    for i in $(seq 1 50); do
        munge_ok && return 0
        sleep 0.2
    done
    die "munged started but 'munge -n | unmunge' fails"
}

slurm_running() {
    pid_alive "$CTLD_PID" slurmctld && pid_alive "$SLURMD_PID" slurmd
}

node_state() {
    # Compact state of our node (idle, mix, alloc, down*, unk*, ...), empty if sinfo fails.
    timeout 10 sinfo -h -N -n "$(hostname -s)" -o '%t' 2>/dev/null | head -n 1 || true
}

wait_node_ready() {
    local deadline=$((SECONDS + WAIT_S)) state="" resumed=0
    while [ $SECONDS -lt $deadline ]; do
        state=$(node_state)
        case "$state" in
            idle | mix | alloc | comp) return 0 ;;
            down | drain | drng | fail)
                if [ $resumed -eq 0 ]; then
                    say "node is '$state', resuming it"
                    scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 1
    done
    die "node $(hostname -s) is not idle after ${WAIT_S} s (sinfo state: '${state:-no answer}')"
}

stop_slurm() {
    if pid_alive "$CTLD_PID" slurmctld; then
        # Stops slurmctld and the slurmd it controls; running jobs are killed.
        timeout 20 scontrol shutdown >/dev/null 2>&1 || true
    fi
    stop_pidfile "$CTLD_PID" slurmctld
    stop_pidfile "$SLURMD_PID" slurmd
}

cmd_start() {
    need_root start
    install_packages
    install -d -m 0755 "$CONF_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
    local new
    new=$(mktemp)
    write_config "$new"
    if [ -f "$CONF" ] && cmp -s "$new" "$CONF" && slurm_running && munge_ok; then
        rm -f "$new"
        wait_node_ready
        say "already running (partition '$PARTITION', node $(hostname -s): $(node_state))"
        return 0
    fi
    if slurm_running || pid_alive "$CTLD_PID" slurmctld || pid_alive "$SLURMD_PID" slurmd; then
        say "configuration changed or a daemon is missing: restarting"
        stop_slurm
    fi
    install -m 0644 "$new" "$CONF"
    rm -f "$new"
    start_munge
    # Partitions and nodes come from the configuration; jobs from the saved state.
    slurmctld || die "slurmctld did not start (config: $CONF)"
    slurmd || die "slurmd did not start (config: $CONF)"
    wait_node_ready
    say "running: partition '$PARTITION', node $(hostname -s) $(node_state)," \
        "$(sinfo -h -o '%c CPUs, %m MB' | head -n 1)"
}

cmd_stop() {
    need_root stop
    stop_slurm
    stop_pidfile "$MUNGE_PID" munged
    if pid_alive "$CTLD_PID" slurmctld || pid_alive "$SLURMD_PID" slurmd || pid_alive "$MUNGE_PID" munged; then
        die "a daemon is still running after stop"
    fi
    say "stopped"
}

cmd_status() {
    local ok=1
    pid_alive "$MUNGE_PID" munged && echo "munged:    running ($(cat "$MUNGE_PID"))" ||
        { echo "munged:    not running"; ok=0; }
    pid_alive "$CTLD_PID" slurmctld && echo "slurmctld: running ($(cat "$CTLD_PID"))" ||
        { echo "slurmctld: not running"; ok=0; }
    pid_alive "$SLURMD_PID" slurmd && echo "slurmd:    running ($(cat "$SLURMD_PID"))" ||
        { echo "slurmd:    not running"; ok=0; }
    local state
    state=$(node_state)
    echo "node:      $(hostname -s) ${state:-unknown}"
    case "$state" in idle | mix | alloc | comp) ;; *) ok=0 ;; esac
    [ $ok -eq 1 ] && { sinfo; return 0; }
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|restart|status" >&2
        exit 2
        ;;
esac
