#!/usr/bin/env bash
# slurm-local-cluster.sh -- a REAL single-node SLURM cluster on localhost for tests/CI.
#
# Copied from the team's measured recipe (shared/tools/slurm-local-cluster.sh, notes in
# shared/notes/slurm-local.md) so that CI, which has only this repository, can run it. Changes:
# extra overlapping partitions (SLURM_LOCAL_EXTRA_PARTITIONS, default "cpu gpu") so the tests see
# jobs routed by their resources, and AccountingStoreFlags=job_comment so sacct shows the
# plugin's per-job comment (rule_<name>_wildcards_...). Used by tests/cluster/test_slurm_cluster.py.
#
# Target: Debian 12 (bookworm), root, no systemd as PID 1 (container/sandbox), no GPU.
# Slurm 22.05.8 + munge 0.5.15 from Debian; optional slurmdbd + MariaDB so that `sacct`
# works (the snakemake SLURM executor plugin polls with `sacct` by default).
# Fake GPUs are declared as GRES backed by dummy character devices, so
# `sbatch --gres=gpu:1` / `--gpus=1` get scheduled and CUDA_VISIBLE_DEVICES is set.
#
# Usage (as root):
#   ./slurm_local_cluster.sh install   # apt packages (idempotent; apt-get update only if needed)
#   ./slurm_local_cluster.sh start     # write configs, start daemons (idempotent), wait until node idle
#   ./slurm_local_cluster.sh verify    # sbatch/srun/GRES checks (+ sacct in dbd mode)
#   ./slurm_local_cluster.sh demo      # venv + snakemake 9 + slurm plugin, run a 2-rule workflow
#   ./slurm_local_cluster.sh stop      # scancel all jobs, stop daemons by PID (pidfiles in $RUN_DIR)
#   ./slurm_local_cluster.sh status
#   ./slurm_local_cluster.sh restart   # needed after changing any knob below (start on a running cluster
#                                      # rewrites the configs but does not reload the daemons)
#   ./slurm_local_cluster.sh all       # install start verify demo   (cluster stays up; call stop later)
#
# Environment knobs:
#   SLURM_LOCAL_ACCOUNTING=dbd|none  dbd (default): MariaDB+slurmdbd, sacct works -> the plugin's
#                                    default status command (sacct) works unmodified.
#                                    none: no DB; sacct fails ("Slurm accounting storage is disabled"),
#                                    so the snakemake profile MUST set `slurm-status-command: squeue`.
#   SLURM_LOCAL_GPUS=2               number of fake GPUs on the node
#   SLURM_LOCAL_GPU_TYPE=a100        optional typed GRES (gpu:a100:N) for rules using gpu_model
#   SLURM_LOCAL_FAKE_GPU=mknod|symlink     dummy char devices (default) or symlinks to /dev/null
#   SLURM_LOCAL_ACCOUNTS="mylab"     dbd mode: create these accounts (the plugin validates slurm_account)
#   SLURM_LOCAL_RUN_DIR=/run/slurm-local   pidfiles + fake GPU device nodes
#   SLURM_LOCAL_DEMO_DIR=/tmp/slurm-local-demo  SLURM_LOCAL_VENV=$DEMO_DIR/venv
set -euo pipefail

ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-dbd}
NGPUS=${SLURM_LOCAL_GPUS:-2}
GPU_TYPE=${SLURM_LOCAL_GPU_TYPE:-}            # e.g. a100 -> typed GRES, so gpu_model="a100" (--gpus=a100:1) works
FAKE_GPU=${SLURM_LOCAL_FAKE_GPU:-mknod}       # mknod | symlink (-> /dev/null, if mknod is not permitted)
RUN_DIR=${SLURM_LOCAL_RUN_DIR:-/run/slurm-local}
CLUSTER=${SLURM_LOCAL_CLUSTER:-localcluster}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
EXTRA_PARTITIONS=${SLURM_LOCAL_EXTRA_PARTITIONS-cpu gpu}   # same node, not default
DEMO_DIR=${SLURM_LOCAL_DEMO_DIR:-/tmp/slurm-local-demo}
VENV=${SLURM_LOCAL_VENV:-$DEMO_DIR/venv}
ACCOUNTS=${SLURM_LOCAL_ACCOUNTS:-}            # dbd mode: accounts to create (e.g. "mylab"); root is added to them
DBPASS=${SLURM_LOCAL_DBPASS:-slurmtestpw}     # local test DB only, bound to 127.0.0.1
NODE=$(hostname -s)
CONF=/etc/slurm
LOG=/var/log/slurm

log() { printf '[slurm-local %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
case "$ACCOUNTING" in dbd|none) ;; *) die "SLURM_LOCAL_ACCOUNTING must be dbd or none";; esac

# ---------------------------------------------------------------- install
install_pkgs() {
  local pkgs=(munge slurmctld slurmd slurm-client)
  [ "$ACCOUNTING" = dbd ] && pkgs+=(slurmdbd mariadb-server)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then log "packages already installed"; return; fi
  log "installing: ${missing[*]}"
  # Keep maintainer scripts from starting daemons through /etc/init.d (no systemd here);
  # Docker images already ship such a policy-rc.d, bare Debian does not.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "installed: $(slurmd -V)"
}

# ---------------------------------------------------------------- helpers
pid_alive() {  # pidfile expected-comm   (guards against stale/recycled PIDs and zombies)
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f"); [ -d "/proc/$pid" ] || return 1
  [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$comm" ] || return 1
  [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ]
}
is_running() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; }

wait_for() {  # seconds description command...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && die "timeout (${t}s) waiting for $what"
    sleep 0.2
  done
}

stop_pid() {  # name  (pidfile $RUN_DIR/name.pid; SIGTERM, then SIGKILL after 15 s)
  local name=$1 f="$RUN_DIR/$1.pid" pid
  if ! pid_alive "$f" "$name"; then rm -f "$f"; return 0; fi
  pid=$(cat "$f"); log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 75); do is_running "$pid" || break; sleep 0.2; done
  # slurmd ignores SIGTERM while stuck retrying registration with a dead slurmctld
  if is_running "$pid"; then log "$name did not exit, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$f"
}

# ---------------------------------------------------------------- configs
write_configs() {
  # srun/slurmd look the node name up; make sure it resolves (containers usually have it)
  getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >> /etc/hosts
  mkdir -p "$CONF" "$RUN_DIR/fake-gpu" "$LOG" /var/lib/slurm/slurmctld /var/spool/slurmd /run/munge
  chown slurm:slurm "$LOG" /var/lib/slurm/slurmctld
  chown munge:munge /run/munge; chmod 755 /run/munge

  # munge key (Debian's postinst normally creates it); must be owned by munge, mode 0400/0600
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key

  # Fake GPUs: gres/gpu DROPS file-less GPUs ("Removing file-less GPU") and rejects regular
  # files ("not a valid character or block device" -> no CUDA_VISIBLE_DEVICES), so create
  # dummy char devices (NVIDIA major 195). Fallback: symlinks to /dev/null if mknod is denied.
  local i
  for i in $(seq 0 $((NGPUS - 1))); do
    local d="$RUN_DIR/fake-gpu/nvidia$i"
    if [ "$FAKE_GPU" = mknod ] && [ -c "$d" ] && [ ! -L "$d" ]; then continue; fi
    if [ "$FAKE_GPU" = symlink ] && [ -L "$d" ]; then continue; fi
    rm -f "$d"
    if [ "$FAKE_GPU" = mknod ] && mknod -m 666 "$d" c 195 "$i" 2>/dev/null; then :; else ln -s /dev/null "$d"; fi
  done

  # hardware as slurmd sees it; keep 5% memory headroom
  local hw mem
  hw=$(slurmd -C | head -1)
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  hw=$(sed -e "s/^NodeName=[^ ]* //" -e "s/RealMemory=[0-9]*/RealMemory=$((mem * 95 / 100))/" <<<"$hw")

  local acct
  if [ "$ACCOUNTING" = dbd ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"          # TRES gres/gpu only allowed with slurmdbd (fatal otherwise)
  else
    acct="AccountingStorageType=accounting_storage/none"
  fi

  cat > "$CONF/slurm.conf.new" <<EOF
# generated by slurm_local_cluster.sh -- single node, no cgroups, fake GPUs
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# no cgroup/systemd in the sandbox:
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
$acct
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
MinJobAge=300
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 $hw Gres=gpu:${GPU_TYPE:+$GPU_TYPE:}$NGPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
$(for p in $EXTRA_PARTITIONS; do echo "PartitionName=$p Nodes=$NODE MaxTime=INFINITE State=UP"; done)
EOF
  mv "$CONF/slurm.conf.new" "$CONF/slurm.conf"
  echo "NodeName=$NODE Name=gpu ${GPU_TYPE:+Type=$GPU_TYPE }File=$RUN_DIR/fake-gpu/nvidia[0-$((NGPUS - 1))]" > "$CONF/gres.conf"

  if [ "$ACCOUNTING" = dbd ]; then
    cat > "$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$CONF/slurmdbd.conf"; chmod 600 "$CONF/slurmdbd.conf"   # slurmdbd insists
  fi
}

# ---------------------------------------------------------------- start
start_bg() {  # name cmd...  -> runs cmd in foreground mode in the background, records $!
  local name=$1; shift
  if pid_alive "$RUN_DIR/$name.pid" "$name"; then log "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return 0; fi
  nohup "$@" >>"$LOG/$name.stdout" 2>&1 </dev/null &
  echo $! > "$RUN_DIR/$name.pid"
  log "started $name (pid $!)"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1; }

start_cluster() {
  local t0=$SECONDS
  write_configs
  # munged: -F = foreground; setpriv execs, so $! is munged itself
  if ! pid_alive "$RUN_DIR/munged.pid" munged && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "a munged not started by this script is already running; using it"
  else
    start_bg munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  fi
  wait_for 20 munged bash -c 'munge -n | unmunge'

  if [ "$ACCOUNTING" = dbd ]; then
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    if ! pid_alive "$RUN_DIR/mariadbd.pid" mariadbd && mariadb-admin ping >/dev/null 2>&1; then
      log "a MariaDB not started by this script is already running; using it"
    else start_bg mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --pid-file=/run/mysqld/mariadbd.pid --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
    fi
    wait_for 60 mariadb mariadb-admin ping
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    start_bg slurmdbd /usr/sbin/slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n show cluster
    # slurmctld would register the cluster itself, but accounts need it to exist first
    sacctmgr -n show cluster format=cluster -P | grep -qx "$CLUSTER" || sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
    # the plugin validates `slurm_account` with sacctmgr: create the ones the profile uses
    local a u
    for a in $ACCOUNTS; do
      sacctmgr -i -Q add account "$a" Cluster="$CLUSTER" Description=test Organization=test >/dev/null 2>&1 || true
      for u in root ${SUDO_USER:-} ${SLURM_LOCAL_USERS:-}; do
        sacctmgr -i -Q add user "$u" Account="$a" Cluster="$CLUSTER" >/dev/null 2>&1 || true
      done
    done
  fi

  start_bg slurmctld /usr/sbin/slurmctld -D
  wait_for 60 slurmctld bash -c 'scontrol ping | grep -q UP'
  start_bg slurmd /usr/sbin/slurmd -D
  # wait until slurmd registered (state leaves unknown/down*); INVAL = config mismatch
  if ! (wait_for 60 "node registration" bash -c "sinfo -h -n $NODE -o %T | grep -qvE '^(unk|down|inval|n/a)'"); then
    scontrol show node "$NODE" | grep -E 'State|Reason' >&2; die "node did not register; see $LOG/slurmd.log"
  fi
  # a node drained by an earlier bad config/run stays drained in the saved state: resume it
  if node_state | grep -qE 'drain|down|fail'; then
    log "node state $(node_state): resuming"; scontrol update nodename="$NODE" state=resume || true
  fi
  wait_for 30 "node idle" bash -c "sinfo -h -n $NODE -o %T | grep -qE '^(idle|mixed|allocated)'"
  log "cluster up in $((SECONDS - t0))s: $(sinfo -h -o '%P %a %D %T %N %G')"
}

# ---------------------------------------------------------------- stop / status
stop_cluster() {
  if pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
    local jobs; jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      log "cancelling jobs: $(echo $jobs)"; scancel $jobs || true
      for _ in $(seq 1 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  stop_pid slurmd; stop_pid slurmctld; stop_pid slurmdbd; stop_pid mariadbd; stop_pid munged
  log "stopped"
}

status_cluster() {
  local n
  for n in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid_alive "$RUN_DIR/$n.pid" "$n"; then echo "$n: running (pid $(cat "$RUN_DIR/$n.pid"))"; else echo "$n: not running"; fi
  done
  pid_alive "$RUN_DIR/slurmctld.pid" slurmctld && { sinfo; squeue; } || true
}

# ---------------------------------------------------------------- verify
verify_cluster() {
  local d; d=$(mktemp -d /tmp/slurm-verify.XXXX); cd "$d"
  log "verify in $d"
  scontrol ping
  sinfo -N -o '%N %P %T %c %m %G'
  scontrol show node "$NODE" | grep -E 'Gres=|CfgTRES' 
  srun -n1 -t 1 hostname
  sbatch --wait -t 1 -o gres.out  --gres=gpu:1 --wrap 'echo "CVD=$CUDA_VISIBLE_DEVICES"' >/dev/null
  sbatch --wait -t 1 -o gpus.out  --gpus=1     --wrap 'echo "CVD=$CUDA_VISIBLE_DEVICES SLURM_GPUS=$SLURM_GPUS"' >/dev/null
  sbatch --wait -t 1 -o cpu.out               --wrap 'echo "CVD=${CUDA_VISIBLE_DEVICES:-unset}"' >/dev/null
  cat gres.out gpus.out cpu.out
  grep -q '^CVD=[0-9]' gres.out || die "--gres=gpu:1 job got no CUDA_VISIBLE_DEVICES"
  grep -q '^CVD=[0-9]' gpus.out || die "--gpus=1 job got no CUDA_VISIBLE_DEVICES"
  grep -q '^CVD=unset' cpu.out  || die "CPU job unexpectedly got a GPU"
  # GRES is recorded on the job (TresPerNode for --gres, TresPerJob for --gpus)
  local jid; jid=$(sbatch --parsable -t 1 --gres=gpu:1 --wrap 'sleep 2')
  scontrol show job -d "$jid" | grep -E 'JobState|TresPer|GRES' || true
  if sbatch -t 1 --gpus=$((NGPUS + 1)) --wrap true 2>/dev/null; then die "over-asking GPUs was accepted"; fi
  if [ "$ACCOUNTING" = dbd ]; then
    sleep 3
    sacct -X -o JobID,JobName%12,State,AllocTRES%55 | tail -n 6
    sacct -X -n -P -o AllocTRES | grep -q 'gres/gpu=1' || die "sacct does not show gres/gpu"
  else
    sacct -X >/dev/null 2>&1 && log "note: sacct works?!" || log "sacct fails as expected without slurmdbd (use slurm-status-command: squeue)"
  fi
  log "verify OK"
  cd /; rm -rf "$d"
}

# ---------------------------------------------------------------- demo (snakemake)
demo() {
  local t0=$SECONDS
  mkdir -p "$DEMO_DIR/profiles/slurm"
  if [ ! -x "$VENV/bin/snakemake" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "snakemake[reports]>=9,<10" "snakemake-executor-plugin-slurm>=2,<3" \
      > "$DEMO_DIR/pip.log" 2>&1 || { tail -20 "$DEMO_DIR/pip.log"; die "pip install failed"; }
  fi
  "$VENV/bin/snakemake" --version
  "$VENV/bin/pip" show snakemake-executor-plugin-slurm | grep -i '^version'
  cd "$DEMO_DIR"
  cat > Snakefile <<'EOF'
localrules: all
report: "report/workflow.rst"

rule all:
    input: "results/gpu.txt"

rule cpu_step:
    output: "results/cpu.txt"
    threads: 1
    resources: mem_mb=500, runtime=5          # runtime in minutes
    shell: "echo \"cpu_step job=$SLURM_JOB_ID cvd=${{CUDA_VISIBLE_DEVICES:-none}}\" > {output}"

rule gpu_step:
    input: "results/cpu.txt"
    output: report("results/gpu.txt", caption="report/gpu.rst", category="GPU")
    threads: 1
    resources: gpu=1, mem_mb=1000, runtime=5  # plugin -> sbatch --gpus=1 (gres="gpu:1" -> --gres=gpu:1)
    shell: "cat {input} > {output}; echo \"gpu_step job=$SLURM_JOB_ID cvd=${{CUDA_VISIBLE_DEVICES:-none}}\" >> {output}"
EOF
  mkdir -p report; echo "Local SLURM smoke test." > report/workflow.rst; echo "Fake-GPU step output." > report/gpu.rst
  {
    echo "executor: slurm"
    echo "jobs: 4"
    echo "latency-wait: 5"
    echo "printshellcmds: true"
    [ "$ACCOUNTING" = none ] && echo "slurm-status-command: squeue   # no slurmdbd -> sacct unusable"
    echo "slurm-init-seconds-before-status-checks: 2"
    echo "seconds-between-status-checks: 2"
    echo "default-resources:"
    echo "  slurm_partition: \"$PARTITION\""
    echo "  mem_mb: 500"
    echo "  runtime: 10"
  } > profiles/slurm/config.yaml
  rm -rf results .snakemake
  local t1=$SECONDS
  # -k: snakemake ignores SIGTERM while waiting on jobs it lost track of
  timeout -k 10 600 "$VENV/bin/snakemake" --profile profiles/slurm --verbose > run.log 2>&1 || { tail -50 run.log; die "snakemake failed"; }
  log "workflow finished in $((SECONDS - t1))s"
  grep -E '^sbatch call' run.log | sed -e 's/ --wrap=.*//' 
  cat results/gpu.txt
  grep -q 'gpu_step job=[0-9]* cvd=[0-9]' results/gpu.txt || die "GPU rule did not get a GPU"
  grep -q -- '--gpus=1' run.log || die "GPU rule was not submitted with --gpus=1"
  # HTML report (needs the `reports` extra = pygments; no network needed)
  if "$VENV/bin/snakemake" --report report.html > report.log 2>&1; then ls -la report.html; else tail -5 report.log; die "report failed"; fi
  log "demo OK in $((SECONDS - t0))s (dir $DEMO_DIR)"
}

cmd=${1:-all}
case "$cmd" in
  install) install_pkgs ;;
  start)   install_pkgs; start_cluster ;;
  verify)  verify_cluster ;;
  demo)    demo ;;
  stop)    stop_cluster ;;
  restart) stop_cluster; start_cluster ;;
  status)  status_cluster ;;
  all)     install_pkgs; start_cluster; verify_cluster; demo ;;
  *) die "usage: $0 {install|start|verify|demo|stop|restart|status|all}" ;;
esac
