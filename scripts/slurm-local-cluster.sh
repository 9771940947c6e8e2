#!/usr/bin/env bash
# A two-node SLURM cluster on this one machine, for the tests and CI.
#
#   bash scripts/slurm-local-cluster.sh start    # install if needed, configure, start, wait until idle
#   bash scripts/slurm-local-cluster.sh status   # exit 0 when both nodes answer and accept jobs
#   bash scripts/slurm-local-cluster.sh stop     # stop both slurmd, slurmctld, munged and any job left
#   bash scripts/slurm-local-cluster.sh restart
#
# Runs as root. Uses Debian's `slurm-wlm` and `munge` packages (installed with
# apt-get when missing). One slurmctld and two slurmd (`slurmd -N n1`,
# `slurmd -N n2`, ports 17001 and 17002) all run here; both nodes are this host,
# reached on 127.0.0.1, so a job over two nodes runs its tasks here twice, as
# two SLURM nodes would.
#
# What each node declares is what a real GPU node would:
#   - this machine's CPUs (`slurmd -C`): both nodes have the same CPU ids, and
#     tasks are bound to the CPUs SLURM gives them (a task with --cpus-per-task=1
#     runs on one CPU);
#   - half of this machine's memory (the nodes together have no more than it);
#   - GPUs as GRES (gpu:$ADMIN_SLURM_GPUS_PER_NODE), each backed by a character
#     device made with mknod (major 195, as /dev/nvidia<i>; nothing opens them)
#     under /dev/slurm-local-gpu/<node>/. SLURM schedules, refuses and queues
#     --gres=gpu:G and --gpus=N for real and sets CUDA_VISIBLE_DEVICES in jobs.
#
# Binding: where the machine has writable cgroup v1 hierarchies (cpuset, memory,
# devices, freezer), task/cgroup + proctrack/cgroup confine each job to its
# CPUs, its memory (--mem) and its GPU devices (opening a GPU device of the node
# that the job was not given fails with EPERM), and task/affinity binds each
# task inside that. On
# other machines (cgroup v2, read-only cgroups, as in many containers; SLURM
# 22.05's cgroup/v2 expects systemd or a delegated cgroup tree), task/affinity
# alone binds the tasks (sched_setaffinity), with no memory or device
# confinement. `start` says which one it uses.
#
# The node names n1 and n2 are added to /etc/hosts (127.0.0.1) when they do not
# resolve: jobs reach their peers by node name, as on a real cluster.
#
# The configuration goes to /etc/slurm (slurm.conf, gres.conf): job steps
# (`srun` inside a job) do not find a configuration given through SLURM_CONF.
# There is no slurmdbd, hence no `sacct`: use the Snakemake SLURM executor with
# `--slurm-status-command squeue` (see slurm/README.md). MinJobAge is large so
# that squeue still reports finished jobs when the executor polls.
#
# `start` is a no-op when the same configuration already runs; a changed
# configuration restarts the daemons (cancelling the cluster's jobs). A single-node cluster started by an older
# version of this script (slurmd with /run/slurmd.pid) is stopped first.
#
# Environment (all optional):
#   ADMIN_SLURM_PARTITION       partition name (default: local)
#   ADMIN_SLURM_GPUS_PER_NODE   GPUs declared on each node (default: 2)
#   ADMIN_SLURM_WAIT_S          seconds to wait for the nodes to become idle (default: 90)
#   ADMIN_SLURM_BINDING         auto (default), cgroup or affinity (see above)
#
# Every failure ends with a line starting "slurm-local-cluster: error:" and
# the tail of the daemon logs, and a non-zero exit status.
set -euo pipefail

PARTITION=${ADMIN_SLURM_PARTITION:-local}
GPUS_PER_NODE=${ADMIN_SLURM_GPUS_PER_NODE:-2}
WAIT_S=${ADMIN_SLURM_WAIT_S:-90}
BINDING=${ADMIN_SLURM_BINDING:-auto}
NODES=(n1 n2)
FIRST_PORT=17001 # n1 listens on 17001, n2 on 17002
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
CGROUP_CONF=$CONF_DIR/cgroup.conf
CGROUP_ROOT=/sys/fs/cgroup
# The cgroup v1 controllers task/cgroup and proctrack/cgroup use.
CGROUP_CONTROLLERS=(cpuset memory devices freezer)
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
GPU_DEV_DIR=/dev/slurm-local-gpu
# The character-device major of NVIDIA GPUs (/dev/nvidia0 is c 195 0).
GPU_DEV_MAJOR=195
CTLD_PID=/run/slurmctld.pid
# One slurmd per node: "%n" is the node name in slurm.conf.
SLURMD_PID_PATTERN=/run/slurmd-%n.pid
# The single-node cluster of older versions of this script.
OLD_SLURMD_PID=/run/slurmd.pid
MUNGE_RUN=/run/munge
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_KEY=/etc/munge/munge.key

say() { echo "slurm-local-cluster: $*" >&2; }

node_file() {
    # node_file PATTERN NODE: PATTERN with %n replaced by NODE
    echo "${1//%n/$2}"
}

slurmd_pid() { node_file "$SLURMD_PID_PATTERN" "$1"; }
slurmd_log() { echo "$LOG_DIR/slurmd-$1.log"; }

die() {
    say "error: $*"
    local log node
    local logs=("$LOG_DIR/slurmctld.log")
    for node in "${NODES[@]}"; do logs+=("$(slurmd_log "$node")"); done
    logs+=(/var/log/munge/munged.log)
    for log in "${logs[@]}"; do
        if [ -s "$log" ]; then
            echo "---- last lines of $log" >&2
            tail -n 15 "$log" >&2 || true
        fi
    done
    exit 1
}

check_settings() {
    [[ $GPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] && [ "$GPUS_PER_NODE" -le 64 ] ||
        die "ADMIN_SLURM_GPUS_PER_NODE must be a whole number from 1 to 64 (got '$GPUS_PER_NODE')"
    [[ $PARTITION =~ ^[A-Za-z0-9_-]+$ ]] ||
        die "ADMIN_SLURM_PARTITION must be letters, digits, '_' or '-' (got '$PARTITION')"
    [[ $WAIT_S =~ ^[0-9]+$ ]] ||
        die "ADMIN_SLURM_WAIT_S must be a whole number of seconds (got '$WAIT_S')"
    case "$BINDING" in
        auto) BINDING=$(cgroup_v1_usable && echo cgroup || echo affinity) ;;
        cgroup) cgroup_v1_usable || die "ADMIN_SLURM_BINDING=cgroup but $CGROUP_ROOT has no" \
            "writable cgroup v1 ${CGROUP_CONTROLLERS[*]} hierarchies (use affinity)" ;;
        affinity) ;;
        *) die "ADMIN_SLURM_BINDING must be auto, cgroup or affinity (got '$BINDING')" ;;
    esac
}

cgroup_v1_usable() {
    # Every controller is a cgroup v1 hierarchy in which root can make a cgroup.
    local c probe
    for c in "${CGROUP_CONTROLLERS[@]}"; do
        [ "$(stat -f -c %T "$CGROUP_ROOT/$c" 2>/dev/null)" = cgroupfs ] || return 1
        probe="$CGROUP_ROOT/$c/slurm-local-cluster-probe.$$"
        mkdir "$probe" 2>/dev/null || return 1
        rmdir "$probe" 2>/dev/null || true
    done
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

stop_pid() {
    # stop_pid PID NAME: TERM the process, wait, then KILL it
    local pid=$1 name=$2 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        [ -d "/proc/$pid" ] || return 0
        sleep 0.2
    done
    say "$name ($pid) ignored SIGTERM for 10 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
}

stop_pidfile() {
    # stop_pidfile PIDFILE PROGRAM: stop the process the pid file names
    local pidfile=$1 prog=$2
    pid_alive "$pidfile" "$prog" || { rm -f "$pidfile"; return 0; }
    stop_pid "$(cat "$pidfile")" "$prog"
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

resolve_node_names() {
    # Node names are host names on a real cluster (jobs find their peers through
    # SLURM_JOB_NODELIST, e.g. a rendezvous on the first node): make them resolve
    # to this machine.
    local node missing=()
    for node in "${NODES[@]}"; do
        getent hosts "$node" >/dev/null 2>&1 || missing+=("$node")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "adding ${missing[*]} to /etc/hosts (127.0.0.1)"
    echo "127.0.0.1 ${missing[*]} # slurm-local-cluster nodes" >>/etc/hosts ||
        die "cannot add ${missing[*]} to /etc/hosts"
}

gpu_device() {
    # gpu_device NODE INDEX: the device file of GPU INDEX of NODE
    echo "$GPU_DEV_DIR/$1/nvidia$2"
}

make_gpu_devices() {
    # Character devices for the GRES (slurmd stats each File= of gres.conf).
    local node i dev
    for node in "${NODES[@]}"; do
        install -d -m 0755 "$GPU_DEV_DIR/$node"
        for ((i = 0; i < GPUS_PER_NODE; i++)); do
            dev=$(gpu_device "$node" "$i")
            if [ -c "$dev" ] && [ "$(stat -c '%t:%T' "$dev")" = "$(printf '%x:%x' "$GPU_DEV_MAJOR" "$i")" ]; then
                continue
            fi
            rm -f "$dev"
            mknod -m 0666 "$dev" c "$GPU_DEV_MAJOR" "$i" || die "mknod $dev c $GPU_DEV_MAJOR $i failed"
        done
        # GPUs of an earlier, larger ADMIN_SLURM_GPUS_PER_NODE
        for dev in "$GPU_DEV_DIR/$node"/nvidia*; do
            if [[ $dev =~ /nvidia([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge "$GPUS_PER_NODE" ]; then
                rm -f "$dev"
            fi
        done
    done
}

machine_line() {
    # This machine's CPU layout (CPUs=.. Boards=.. ... ThreadsPerCore=..) and its
    # memory in MB, as slurmd detects them: "<layout> <MB>".
    local line layout mem
    line=$(slurmd -C 2>/dev/null | head -n 1) || true
    [[ $line == NodeName=* ]] || die "'slurmd -C' did not describe this machine (got: ${line:-nothing})"
    layout=$(grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' <<<"$line" | tr '\n' ' ')
    mem=$(grep -oE 'RealMemory=[0-9]+' <<<"$line" | cut -d= -f2)
    [[ $layout == CPUs=* && -n $mem ]] || die "'slurmd -C' gave no CPUs or RealMemory (got: $line)"
    echo "${layout% } $mem"
}

node_lines() {
    # One NodeName line per node: the machine's CPUs, its memory split between the
    # nodes, the GPUs; all on this host, each slurmd on its own port.
    local machine layout mem per_node host i
    machine=$(machine_line)
    layout=${machine% *}
    mem=${machine##* }
    per_node=$((mem / ${#NODES[@]}))
    host=$(hostname -s)
    for i in "${!NODES[@]}"; do
        echo "NodeName=${NODES[$i]} NodeHostname=$host NodeAddr=127.0.0.1 Port=$((FIRST_PORT + i))" \
            "$layout RealMemory=$per_node Gres=gpu:$GPUS_PER_NODE State=UNKNOWN"
    done
}

write_config() {
    # Writes slurm.conf to $1.
    local host
    host=$(hostname -s)
    cat >"$1" <<EOF
# Written by scripts/slurm-local-cluster.sh: a two-node test cluster on one machine.
ClusterName=admin-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
$(binding_lines)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
SchedulerType=sched/backfill
# Backfill every 5 s (default 30): the tests' jobs last seconds, and a small job should
# not wait half a minute beside an idle node.
SchedulerParameters=bf_interval=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# squeue must still list finished jobs when Snakemake polls (it has no sacct here).
MinJobAge=3600
KillWait=10
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID_PATTERN
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd-%n
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
$(node_lines)
PartitionName=$PARTITION Nodes=$(
        IFS=,
        echo "${NODES[*]}"
    ) Default=YES MaxTime=INFINITE State=UP
EOF
}

binding_lines() {
    if [ "$BINDING" = cgroup ]; then
        echo "# Each job in cgroups (its CPUs, memory, GPU devices); each task bound to its CPUs."
        echo "ProctrackType=proctrack/cgroup"
        echo "TaskPlugin=task/cgroup,task/affinity"
    else
        echo "# Each task bound to its CPUs (sched_setaffinity); no cgroups on this machine."
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/affinity"
    fi
}

write_cgroup_config() {
    # Writes cgroup.conf to $1 (read by task/cgroup and proctrack/cgroup only).
    cat >"$1" <<EOF
# Written by scripts/slurm-local-cluster.sh.
CgroupPlugin=cgroup/v1
CgroupMountpoint=$CGROUP_ROOT
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainDevices=yes
EOF
}

write_gres_config() {
    # Writes gres.conf to $1: the GPUs of each node are its device files
    # (AutoDetect=off: there is no NVML here; without File= slurmd reports 0 GPUs).
    local node i
    {
        echo "# Written by scripts/slurm-local-cluster.sh: GPUs backed by mknod devices."
        echo "AutoDetect=off"
        for node in "${NODES[@]}"; do
            for ((i = 0; i < GPUS_PER_NODE; i++)); do
                echo "NodeName=$node Name=gpu File=$(gpu_device "$node" "$i")"
            done
        done
    } >"$1"
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

any_slurm_daemon() {
    # Some daemon of this cluster (or of the old single-node one) is alive.
    local node
    pid_alive "$CTLD_PID" slurmctld && return 0
    pid_alive "$OLD_SLURMD_PID" slurmd && return 0
    for node in "${NODES[@]}"; do
        pid_alive "$(slurmd_pid "$node")" slurmd && return 0
    done
    return 1
}

slurm_running() {
    # slurmctld and every node's slurmd are alive (and no old single-node slurmd).
    local node
    pid_alive "$CTLD_PID" slurmctld || return 1
    pid_alive "$OLD_SLURMD_PID" slurmd && return 1
    for node in "${NODES[@]}"; do
        pid_alive "$(slurmd_pid "$node")" slurmd || return 1
    done
}

node_state() {
    # Compact state of a node (idle, mix, alloc, down*, unk*, ...), empty if sinfo fails.
    timeout 10 sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n 1 || true
}

wait_nodes_ready() {
    local deadline=$((SECONDS + WAIT_S)) node state ready resumed=" "
    local -A states
    while [ $SECONDS -lt $deadline ]; do
        ready=0
        for node in "${NODES[@]}"; do
            state=$(node_state "$node")
            states[$node]=$state
            case "$state" in
                idle | mix | alloc | comp) ready=$((ready + 1)) ;;
                down | drain | drng | fail)
                    if [[ $resumed != *" $node "* ]]; then
                        say "node $node is '$state', resuming it"
                        scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
                        resumed+="$node "
                    fi
                    ;;
            esac
        done
        [ $ready -eq ${#NODES[@]} ] && return 0
        sleep 1
    done
    local report=""
    for node in "${NODES[@]}"; do report+=" $node: '${states[$node]:-no answer}'"; done
    die "the nodes are not all idle after ${WAIT_S} s (sinfo state:$report);" \
        "reason: $(timeout 10 scontrol show node "${NODES[0]}" 2>/dev/null | grep -o 'Reason=.*' || echo none)"
}

cancel_jobs() {
    # Jobs outlive the daemons: cancel them while slurmctld still can, and give
    # their steps KillWait (10 s) and a little more to end.
    pid_alive "$CTLD_PID" slurmctld || return 0
    local ids i
    ids=$(timeout 15 squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %A 2>/dev/null) || true
    [ -n "$ids" ] || return 0
    say "cancelling job(s) $(echo $ids)"
    # shellcheck disable=SC2086 # one word per job id
    timeout 20 scancel $ids >/dev/null 2>&1 || true
    for i in $(seq 1 60); do
        [ -z "$(step_daemons)" ] && return 0
        sleep 0.25
    done
}

processes() {
    # "PID PPID COMM" of every process, read from /proc (no procps needed).
    local stat line rest pid ppid
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$stat" || continue # (it may have ended)
        pid=${line%% *}
        rest=${line##*) }
        read -r _ ppid _ <<<"$rest"
        line=${line#*(}
        echo "$pid $ppid ${line%)*}"
    done
}

step_daemons() {
    processes | awk '$3 == "slurmstepd" { print $1 }'
}

stop_job_steps() {
    # Whatever is left of jobs (slurmstepd and every process under it) is ended:
    # nothing of a stopped cluster keeps the CPUs busy.
    local roots pids
    roots=$(step_daemons)
    [ -n "$roots" ] || return 0
    pids=$(processes | awk -v roots="$roots" '
        BEGIN { n = split(roots, r, "[ \n]+"); for (i = 1; i <= n; i++) if (r[i] != "") mine[r[i]] = 1 }
        { parent[$1] = $2 }
        END {
            do { more = 0; for (p in parent) if (!(p in mine) && (parent[p] in mine)) { mine[p] = 1; more = 1 } } while (more)
            for (p in mine) print p
        }')
    say "killing $(echo "$pids" | wc -w) process(es) left by jobs (slurmstepd and their tasks)"
    # shellcheck disable=SC2086 # one word per pid
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
}

stop_slurm() {
    local node
    cancel_jobs
    if pid_alive "$CTLD_PID" slurmctld; then
        # Stops slurmctld and the slurmd it reaches.
        timeout 20 scontrol shutdown >/dev/null 2>&1 || true
    fi
    stop_pidfile "$CTLD_PID" slurmctld
    for node in "${NODES[@]}"; do
        stop_pidfile "$(slurmd_pid "$node")" slurmd
    done
    if pid_alive "$OLD_SLURMD_PID" slurmd; then
        say "stopping the single-node cluster's slurmd ($OLD_SLURMD_PID)"
    fi
    stop_pidfile "$OLD_SLURMD_PID" slurmd
    stop_job_steps
}

same_file() {
    [ -f "$2" ] && cmp -s "$1" "$2"
}

cmd_start() {
    need_root start
    check_settings
    install_packages
    local node
    install -d -m 0755 "$CONF_DIR" "$STATE_DIR/slurmctld" "$LOG_DIR"
    for node in "${NODES[@]}"; do install -d -m 0755 "$STATE_DIR/slurmd-$node"; done
    make_gpu_devices
    resolve_node_names
    local new new_gres new_cgroup
    new=$(mktemp)
    new_gres=$(mktemp)
    new_cgroup=$(mktemp)
    write_config "$new"
    write_gres_config "$new_gres"
    write_cgroup_config "$new_cgroup"
    if same_file "$new" "$CONF" && same_file "$new_gres" "$GRES_CONF" &&
        { [ "$BINDING" != cgroup ] || same_file "$new_cgroup" "$CGROUP_CONF"; } &&
        slurm_running && munge_ok; then
        rm -f "$new" "$new_gres" "$new_cgroup"
        wait_nodes_ready
        say "already running (partition '$PARTITION':$(for n in "${NODES[@]}"; do echo -n " $n $(node_state "$n")"; done);" \
            "binding: $BINDING)"
        return 0
    fi
    if any_slurm_daemon; then
        say "configuration changed or a daemon is missing: restarting"
        stop_slurm
    fi
    install -m 0644 "$new" "$CONF"
    install -m 0644 "$new_gres" "$GRES_CONF"
    if [ "$BINDING" = cgroup ]; then
        install -m 0644 "$new_cgroup" "$CGROUP_CONF"
    elif grep -qs '^# Written by scripts/slurm-local-cluster.sh' "$CGROUP_CONF"; then
        rm -f "$CGROUP_CONF" # ours, and unused by task/affinity
    fi
    rm -f "$new" "$new_gres" "$new_cgroup"
    start_munge
    # Partitions and nodes come from the configuration; jobs from the saved state.
    slurmctld || die "slurmctld did not start (config: $CONF)"
    for node in "${NODES[@]}"; do
        slurmd -N "$node" || die "slurmd -N $node did not start (config: $CONF, $GRES_CONF)"
    done
    wait_nodes_ready
    say "running: partition '$PARTITION' with nodes ${NODES[*]}, each" \
        "$(sinfo -h -N -n "${NODES[0]}" -o '%c CPUs, %m MB, %G' | head -n 1); binding: $BINDING" \
        "($(grep '^TaskPlugin=' "$CONF"))"
}

cmd_stop() {
    need_root stop
    stop_slurm
    stop_pidfile "$MUNGE_PID" munged
    if any_slurm_daemon || pid_alive "$MUNGE_PID" munged; then
        die "a daemon is still running after stop"
    fi
    say "stopped"
}

cmd_status() {
    local ok=1 node state pidfile
    pid_alive "$MUNGE_PID" munged && echo "munged:      running ($(cat "$MUNGE_PID"))" ||
        { echo "munged:      not running"; ok=0; }
    pid_alive "$CTLD_PID" slurmctld && echo "slurmctld:   running ($(cat "$CTLD_PID"))" ||
        { echo "slurmctld:   not running"; ok=0; }
    for node in "${NODES[@]}"; do
        pidfile=$(slurmd_pid "$node")
        pid_alive "$pidfile" slurmd && echo "slurmd $node:   running ($(cat "$pidfile"))" ||
            { echo "slurmd $node:   not running"; ok=0; }
    done
    if pid_alive "$OLD_SLURMD_PID" slurmd; then
        echo "old single-node slurmd: running ($(cat "$OLD_SLURMD_PID")); 'start' replaces it"
        ok=0
    fi
    for node in "${NODES[@]}"; do
        state=$(node_state "$node")
        echo "node $node:     ${state:-unknown}"
        case "$state" in idle | mix | alloc | comp) ;; *) ok=0 ;; esac
    done
    echo "binding:     $(grep -s "^TaskPlugin=" "$CONF" || echo unknown)"
    [ $ok -eq 1 ] && { sinfo -N -o '%N %P %t %c %m %G'; return 0; }
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
