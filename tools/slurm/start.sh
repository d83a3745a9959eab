#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine for tests (make test-slurm).
#
#   tools/slurm/start.sh STATE_DIR
#
# Installs Debian's slurm-wlm and munge when missing (root + apt-get), writes STATE_DIR/slurm.conf (node = this
# host, partition `debug`, no accounting, its own ports 16817/16818 so a real SLURM on the host is not touched),
# starts munged (unless one already answers), slurmctld and slurmd, and waits until the node is idle.
# Everything this script starts is listed in STATE_DIR/started (name and pid, and the link
# /etc/slurm/slurm.conf -> STATE_DIR/slurm.conf); tools/slurm/stop.sh STATE_DIR stops and removes exactly those.
# Clients find the cluster through SLURM_CONF=STATE_DIR/slurm.conf (or that link).
#
# Exit status: 0 = running; 3 = SLURM cannot be installed or started here (the message says why; callers skip);
# anything else = a bug.
set -euo pipefail

state=${1:?usage: tools/slurm/start.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)
skip() { echo "SKIP: $*" >&2; exit 3; }

# --- install -------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" -eq 0 ] || skip "slurmctld/slurmd/munged are not installed and installing them needs root"
    command -v apt-get >/dev/null || skip "slurmctld/slurmd/munged are not installed and there is no apt-get"
    echo "installing slurm-wlm and munge (apt-get)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } \
        >"$state/apt.log" 2>&1; then
        tail -5 "$state/apt.log" >&2
        skip "apt-get install slurm-wlm munge failed (log: $state/apt.log)"
    fi
fi
[ "$(id -u)" -eq 0 ] || skip "the test cluster runs slurmd as root (SlurmdUser=root); run as root"

: >"$state/started"
record() { echo "$1 $2" >>"$state/started"; }

# --- munge ---------------------------------------------------------------------------------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "munged: using the one already running" >&2
else
    [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged --pid-file "/run/munge/oadp-test.pid" \
        || skip "munged does not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do [ -s /run/munge/oadp-test.pid ] && break; sleep 0.1; done
    record munged "$(cat /run/munge/oadp-test.pid)"
    munge -n | unmunge >/dev/null || skip "munged started but does not answer"
fi

# --- slurm.conf ----------------------------------------------------------------------------------------------
host=$(hostname -s)
cpus=${OADP_SLURM_CPUS:-16}
mem_mb=${OADP_SLURM_MEM_MB:-65536}
gpus=${OADP_SLURM_GPUS:-2}
mkdir -p "$state/ctld" "$state/d"
cat >"$state/slurm.conf" <<CONF
# single-node test cluster written by tools/slurm/start.sh
ClusterName=oadptest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
# a requeued job waits cred_expire + 1 s before it may start again (default 120 s)
AuthInfo=cred_expire=10
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
GresTypes=gpu
# a virtual node the size of a small GPU server (slurmd accepts the configured sizes: config_overrides), so that
# the SLURM profile's real requests (8 CPUs, 16 GB and a GPU for extraction jobs) are scheduled as written;
# the "GPUs" are counted, not bound to devices, and jobs run on the CPU
SlurmdParameters=config_overrides
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# slurmd wants a character device per GPU: copies of /dev/null (major 1, minor 3) stand in for them
: >"$state/gres.conf"
for ((i = 0; i < gpus; i++)); do
    rm -f "$state/fake-gpu$i"
    mknod "$state/fake-gpu$i" c 1 3 || skip "mknod (fake GPU device files for gres.conf) is not allowed here"
    echo "NodeName=$host Name=gpu File=$state/fake-gpu$i" >>"$state/gres.conf"
done
export SLURM_CONF="$state/slurm.conf"
# The SLURM executor's job step strips SLURM_* variables, SLURM_CONF included, before its inner `srun`, which then
# looks for /etc/slurm/slurm.conf: link the test cluster's config there (never over a real one).
if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$SLURM_CONF" ]; then
    skip "/etc/slurm/slurm.conf already exists (a real SLURM set-up?); this test starts its own cluster and does not replace it"
fi
mkdir -p /etc/slurm
ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
record link /etc/slurm/slurm.conf

# --- daemons -------------------------------------------------------------------------------------------------
# -c: clear the state (jobs, node states) an earlier run of this test cluster left: a clean start every time
/usr/sbin/slurmctld -f "$SLURM_CONF" -c || skip "slurmctld does not start (see $state/slurmctld.log)"
for _ in $(seq 50); do [ -s "$state/slurmctld.pid" ] && break; sleep 0.1; done
record slurmctld "$(cat "$state/slurmctld.pid")"
/usr/sbin/slurmd -f "$SLURM_CONF" || skip "slurmd does not start (see $state/slurmd.log)"
for _ in $(seq 50); do [ -s "$state/slurmd.pid" ] && break; sleep 0.1; done
record slurmd "$(cat "$state/slurmd.pid")"

for _ in $(seq 60); do
    node_state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
    [ "$node_state" = idle ] && break
    sleep 0.5
done
if [ "${node_state:-}" != idle ]; then
    tail -n 5 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
    skip "the node did not become idle (state '${node_state:-none}'; logs in $state)"
fi
echo "SLURM running: SLURM_CONF=$SLURM_CONF ($host: $cpus CPUs, ${mem_mb} MB, $gpus GPUs as configured; partition debug)" >&2
