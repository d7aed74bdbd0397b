# shellcheck shell=bash
#
# tests/lib/servers.sh -- throwaway MariaDB + RabbitMQ for mrte-collector tests.
#
# Source it from a bash test script (works under `set -euo pipefail`):
#
#   . tests/lib/servers.sh
#   work=$(mktemp -d)
#   trap servers_stop EXIT
#   trap 'exit 130' INT; trap 'exit 143' TERM HUP   # else bash skips the EXIT trap on signals
#   servers_start "$work"
#   sysbench_prepare
#   general_log_reset
#   sysbench_run 3 4
#   general_log_dump sbtest "$out.tsv"
#
# Call servers_start and servers_stop from the same shell process: not in a
# pipeline or $(...) (the exported variables would be lost with the subshell;
# servers_stop can still be run elsewhere after sourcing WORKDIR/servers.env).
# Needs root (mariadbd runs with --user=root).
#
# Everything (datadirs, sockets, logs, mnesia, erlang cookie/HOME, pid files)
# lives under WORKDIR.  Both servers listen on 127.0.0.1 only.  Nothing under
# /var/lib/mysql, /var/lib/rabbitmq, /etc/rabbitmq or any system service is
# used or touched; RabbitMQ gets its own epmd on a private port.
#
# Public functions
#   servers_start WORKDIR      start both servers, export the variables below,
#                              write WORKDIR/servers.env (sourceable)
#   servers_stop               stop what servers_start started (by PID only),
#                              remove WORKDIR unless MRTE_TEST_KEEP=1.
#                              Idempotent, safe in an EXIT trap.
#   mysql_root [ARGS...]       mariadb client as root over the unix socket
#   mysql_tcp USER PASS [ARGS...]  mariadb client over TCP 127.0.0.1:$MYSQL_PORT
#   rmq_cli TOOL [ARGS...]     rabbitmqctl / rabbitmq-diagnostics / ... against
#                              our node (e.g. `rmq_cli rabbitmq-diagnostics ping`)
#   general_log_reset          TRUNCATE mysql.general_log
#   general_log_dump USER OUT  ground truth TSV: thread_id<TAB>command_type<TAB>HEX(argument)
#   sysbench_prepare           sysbench oltp_read_write cleanup+prepare (2 x 2000 rows)
#   sysbench_run SECS THREADS [EXTRA...]
#                              sysbench oltp_read_write run; prints the
#                              transaction count on stdout
#
# Exported after servers_start
#   SERVERS_WORKDIR SERVERS_LOGDIR
#   MYSQL_PORT MYSQL_SOCKET MYSQL_PID MYSQL_DATADIR MYSQL_ROOT_CMD
#   AMQP_HOST(=127.0.0.1) AMQP_PORT AMQP_URL RMQ_NODE RMQ_PID RMQ_DIST_PORT RMQ_HOME
#   EPMD_PID EPMD_PORT
#   SERVERS_START_SECONDS MYSQL_READY_SECONDS RMQ_READY_SECONDS
# (No MYSQL_HOST: the mariadb client library itself reads MYSQL_HOST and would
# switch mysql_root to TCP.  The host is always 127.0.0.1.)
#
# Accounts: sbtest/sbtest (ALL on sbtest, db_a, db_b, db_c), mrte/mrtepw (global
# PROCESS only), each @'127.0.0.1', @'localhost' and @'%'; root via unix socket.
# mariadbd runs with --general-log=1 --log-output=TABLE --skip-name-resolve
# --skip-ssl (plaintext only) --max-connections=300.
#
# Environment knobs
#   MRTE_TEST_MYSQL_PORT   (default 3306; 0 = any free port)
#   MRTE_TEST_AMQP_PORT    (default 5672; 0 = any free port)
#       If the *default* port is busy another free port is chosen (and a
#       message says so).  An explicitly requested port that is busy is an error.
#   MRTE_TEST_START_TIMEOUT  seconds to wait for readiness (default 60)
#   MRTE_TEST_STOP_TIMEOUT   seconds before kill -9 on stop (default 10)
#   MRTE_TEST_KEEP=1       keep WORKDIR after servers_stop (for post-mortems)
#   MRTE_PYTHON            python with pika (default /usr/bin/python3)

# ---------------------------------------------------------------------------
# internals
# ---------------------------------------------------------------------------

_SRV_PY=${MRTE_PYTHON:-/usr/bin/python3}
_SRV_RMQ_BIN=/usr/lib/rabbitmq/bin
_SRV_MARKER=.mrte-servers-workdir

_srv_log() { printf '[servers] %s\n' "$*" >&2; }
_srv_err() { printf '[servers] ERROR: %s\n' "$*" >&2; }

_srv_now() { date +%s.%N; }
_srv_elapsed() { awk -v a="$1" -v b="$(_srv_now)" 'BEGIN { printf "%.1f", b - a }'; }

# _srv_procinfo PID -> "STATE PPID STARTTIME" (fails if no such process)
_srv_procinfo() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$stat" ] || return 1
    rest=${stat##*) }            # comm may contain spaces/parens
    # shellcheck disable=SC2086
    set -- $rest
    # fields after comm: 1=state 2=ppid ... 20=starttime
    printf '%s %s %s\n' "$1" "$2" "${20}"
}

# _srv_alive PID STARTTIME: running (not zombie) and the same process we started
_srv_alive() {
    local info state ppid start
    [ -n "${1:-}" ] || return 1
    info=$(_srv_procinfo "$1") || return 1
    read -r state ppid start <<<"$info"
    case $state in Z|X|x) return 1 ;; esac
    [ -z "${2:-}" ] || [ "$start" = "$2" ]
}

_srv_starttime() {
    local i
    i=$(_srv_procinfo "$1") || return 1
    # shellcheck disable=SC2086
    set -- $i
    printf '%s\n' "$3"
}

# _srv_descendants PID -> lines "PID STARTTIME" of all live descendants
_srv_descendants() {
    local root=$1 p info state ppid start
    local -A parent=() stime=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        info=$(_srv_procinfo "$p") || continue
        read -r state ppid start <<<"$info"
        case $state in Z|X|x) continue ;; esac
        parent[$p]=$ppid
        stime[$p]=$start
    done
    local -a queue=("$root")
    local cur c
    while [ ${#queue[@]} -gt 0 ]; do
        cur=${queue[0]}
        queue=("${queue[@]:1}")
        for c in "${!parent[@]}"; do
            if [ "${parent[$c]}" = "$cur" ]; then
                printf '%s %s\n' "$c" "${stime[$c]}"
                queue+=("$c")
            fi
        done
    done
}

# record a process we started: name pid starttime (in WORKDIR/run/procs)
_srv_record() {
    local name=$1 pid=$2 start
    start=$(_srv_starttime "$pid" 2>/dev/null) || start=""
    printf '%s %s %s\n' "$name" "$pid" "$start" >>"$SERVERS_WORKDIR/run/procs"
}

# _srv_pick_ports -> prints "mysql amqp dist epmd mysql_note amqp_note"
_srv_pick_ports() {
    "$_SRV_PY" - "${MRTE_TEST_MYSQL_PORT:-}" "${MRTE_TEST_AMQP_PORT:-}" <<'PY'
import random, socket, sys

def free(port):
    # A bind with SO_REUSEADDR fails exactly when somebody listens on (or
    # holds) the port on any IPv4 address, or on a dual-stack [::].
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True

taken = set()
def pick_random():
    # below the kernel's ephemeral range so client sockets do not collide
    for _ in range(2000):
        p = random.randint(20000, 32000)
        if p not in taken and free(p):
            taken.add(p)
            return p
    sys.exit("no free port found in 20000-32000")

def pick(env, default):
    if env == "":
        if free(default):
            taken.add(default)
            return default, "default"
        return pick_random(), "fallback:%d" % default
    p = int(env)
    if p == 0:
        return pick_random(), "random"
    if p in taken or not free(p):
        sys.exit("requested port %d is busy" % p)
    taken.add(p)
    return p, "requested"

m, mn = pick(sys.argv[1], 3306)
a, an = pick(sys.argv[2], 5672)
d = pick_random()
e = pick_random()
print(m, a, d, e, mn, an)
PY
}

# _srv_wait_pid_gone PID STARTTIME SECONDS -> 0 if gone in time
_srv_wait_gone() {
    local pid=$1 start=$2 secs=$3 deadline
    deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    while _srv_alive "$pid" "$start"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
    return 0
}

_srv_tail() {
    local f=$1
    [ -f "$f" ] || return 0
    printf '[servers] ---- last lines of %s ----\n' "$f" >&2
    tail -n "${2:-30}" "$f" >&2 || true
    printf '[servers] ----\n' >&2
}

_srv_require() {
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1 && [ ! -x "$c" ]; then
            _srv_err "required program not found: $c"
            return 1
        fi
    done
}

# ---------------------------------------------------------------------------
# client helpers
# ---------------------------------------------------------------------------

mysql_root() {
    mariadb --no-defaults --protocol=SOCKET --user=root --socket="$MYSQL_SOCKET" "$@"
}

mysql_tcp() {
    local user=$1 pass=$2
    shift 2
    mariadb --no-defaults --protocol=TCP --host=127.0.0.1 --port="$MYSQL_PORT" \
        --user="$user" --password="$pass" "$@"
}

rmq_cli() {
    local tool=$1
    shift
    env -u NOTIFY_SOCKET \
        HOME="$RMQ_HOME" \
        ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_CONF_ENV_FILE="$SERVERS_WORKDIR/rabbitmq/rabbitmq-env.conf" \
        RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        RABBITMQ_NODENAME="$RMQ_NODE" \
        "$_SRV_RMQ_BIN/$tool" -n "$RMQ_NODE" "$@"
}

# ---------------------------------------------------------------------------
# servers_start
# ---------------------------------------------------------------------------

servers_start() {
    local workdir=${1:?usage: servers_start WORKDIR}
    local t0 timeout ports mport aport dport eport mnote anote
    t0=$(_srv_now)
    if [ "${BASHPID:-$$}" != "$$" ]; then
        _srv_log "note: servers_start runs in a subshell (pid ${BASHPID}); its variables vanish" \
            "with it, so call servers_stop from that same subshell (not via a pipe or \$(...))"
    fi
    timeout=${MRTE_TEST_START_TIMEOUT:-60}

    if [ -n "${SERVERS_WORKDIR:-}" ] && [ -f "$SERVERS_WORKDIR/$_SRV_MARKER" ]; then
        _srv_err "servers already started in $SERVERS_WORKDIR (call servers_stop first)"
        return 1
    fi
    _srv_require mariadbd mariadb mariadb-admin mariadb-install-db epmd \
        "$_SRV_RMQ_BIN/rabbitmq-server" "$_SRV_PY" || return 1

    # -- workdir: must be new or empty; mark it so servers_stop may remove it
    mkdir -p "$workdir" || { _srv_err "cannot create $workdir"; return 1; }
    workdir=$(cd "$workdir" && pwd -P) || return 1
    if [ "$workdir" = / ] || [ -n "$(ls -A "$workdir")" ]; then
        _srv_err "WORKDIR $workdir must be a new or empty directory"
        return 1
    fi
    export SERVERS_WORKDIR=$workdir
    export SERVERS_LOGDIR=$workdir/logs
    : >"$workdir/$_SRV_MARKER"
    mkdir -p "$workdir/run" "$workdir/logs" "$workdir/mysql/tmp" \
        "$workdir/rabbitmq/home" "$workdir/rabbitmq/log" "$workdir/rabbitmq/mnesia" || return 1
    : >"$workdir/run/procs"

    # -- ports
    ports=$(_srv_pick_ports) || { _srv_err "port selection failed"; return 1; }
    read -r mport aport dport eport mnote anote <<<"$ports"
    case $mnote in fallback:*)
        _srv_log "default MySQL port ${mnote#fallback:} is busy, using $mport instead" ;; esac
    case $anote in fallback:*)
        _srv_log "default AMQP port ${anote#fallback:} is busy, using $aport instead" ;; esac
    # (no MYSQL_HOST: the mariadb client library reads that variable itself)
    export MYSQL_PORT=$mport
    export AMQP_HOST=127.0.0.1 AMQP_PORT=$aport
    export RMQ_DIST_PORT=$dport EPMD_PORT=$eport
    export AMQP_URL="amqp://guest:guest@127.0.0.1:$aport/%2F"
    export MYSQL_SOCKET=$workdir/mysql/mysqld.sock
    export MYSQL_DATADIR=$workdir/mysql/data
    export MYSQL_ROOT_CMD="mariadb --no-defaults --protocol=SOCKET --user=root --socket=$MYSQL_SOCKET"
    export RMQ_NODE="mrte-test-$$-${RANDOM}@localhost"
    export RMQ_HOME=$workdir/rabbitmq/home
    export MYSQL_PID="" RMQ_PID="" EPMD_PID=""
    if [ ${#MYSQL_SOCKET} -ge 100 ]; then
        _srv_err "socket path too long (${#MYSQL_SOCKET} chars): $MYSQL_SOCKET; use a shorter WORKDIR"
        return 1
    fi
    _srv_log "workdir $workdir: mysql 127.0.0.1:$mport, amqp 127.0.0.1:$aport, node $RMQ_NODE, dist $dport, epmd $eport"

    # -- our own epmd on a private port (never the system one on 4369)
    epmd -port "$eport" -address 127.0.0.1 </dev/null >"$SERVERS_LOGDIR/epmd.log" 2>&1 &
    EPMD_PID=$!
    _srv_record epmd "$EPMD_PID"
    local i
    for ((i = 0; ; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$eport") 2>/dev/null; then break; fi
        if ! _srv_alive "$EPMD_PID" || [ "$i" -ge 100 ]; then
            _srv_err "epmd did not come up on 127.0.0.1:$eport"
            _srv_tail "$SERVERS_LOGDIR/epmd.log"
            return 1
        fi
        sleep 0.05
    done

    # -- RabbitMQ (boots in the background while MariaDB is being set up)
    _srv_rmq_launch || return 1

    # -- MariaDB
    local t_my
    t_my=$(_srv_now)
    _srv_mysql_launch "$timeout" || return 1
    MYSQL_READY_SECONDS=$(_srv_elapsed "$t_my")
    export MYSQL_READY_SECONDS
    _srv_log "MariaDB ready (pid $MYSQL_PID) in ${MYSQL_READY_SECONDS}s"

    # -- wait for RabbitMQ to accept guest/guest AMQP logins
    _srv_rmq_wait "$timeout" || return 1
    RMQ_READY_SECONDS=$(_srv_elapsed "$_SRV_RMQ_T0")
    export RMQ_READY_SECONDS
    _srv_log "RabbitMQ ready (pid $RMQ_PID) in ${RMQ_READY_SECONDS}s"

    SERVERS_START_SECONDS=$(_srv_elapsed "$t0")
    export SERVERS_START_SECONDS
    _srv_write_env
    _srv_log "both servers up in ${SERVERS_START_SECONDS}s (env: $workdir/servers.env)"
}

_srv_rmq_launch() {
    local d=$SERVERS_WORKDIR/rabbitmq
    # random cookie, private HOME: the CLI tools and the node read it there
    (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$d/home/.erlang.cookie") || return 1
    chmod 400 "$d/home/.erlang.cookie"
    : >"$d/rabbitmq-env.conf"                 # shadows /etc/rabbitmq/rabbitmq-env.conf
    printf '[].\n' >"$d/enabled_plugins"      # no plugins: fast boot
    cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
disk_free_limit.absolute = 1MB
log.console = false
log.file.level = info
EOF
    _SRV_RMQ_T0=$(_srv_now)
    (
        cd "$d" || exit 1
        # nothing from the caller's environment may redirect this node
        # shellcheck disable=SC2046
        unset NOTIFY_SOCKET ERL_FLAGS ERL_AFLAGS ERL_ZFLAGS ERL_LIBS \
            $(compgen -e | grep -E '^RABBITMQ_' || true)
        export HOME=$d/home
        export ERL_EPMD_PORT=$EPMD_PORT ERL_EPMD_ADDRESS=127.0.0.1
        export RABBITMQ_NODENAME=$RMQ_NODE
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT
        export RABBITMQ_DIST_PORT=$RMQ_DIST_PORT
        export RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf
        export RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf
        export RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config
        export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins
        export RABBITMQ_MNESIA_BASE=$d/mnesia
        export RABBITMQ_LOG_BASE=$d/log
        export RABBITMQ_LOGS=$d/log/rabbit.log
        export RABBITMQ_PID_FILE=$d/rabbit.pid
        export RABBITMQ_PLUGINS_EXPAND_DIR=$d/plugins-expand
        export RABBITMQ_FEATURE_FLAGS_FILE=$d/feature_flags
        # distribution listener on loopback only; never auto-start an epmd
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
        # makes the start script exec the VM directly (no signal-proxy shell),
        # so $! below is the beam.smp PID
        export RUNNING_UNDER_SYSTEMD=true
        exec "$_SRV_RMQ_BIN/rabbitmq-server" </dev/null >"$SERVERS_LOGDIR/rabbitmq.out" 2>&1
    ) &
    RMQ_PID=$!
    _srv_record rabbitmq "$RMQ_PID"
}

_srv_rmq_wait() {
    local timeout=$1 rc=0
    "$_SRV_PY" - "$AMQP_PORT" "$RMQ_PID" "$timeout" "$_SRV_RMQ_T0" <<'PY' || rc=$?
import os, socket, sys, time
port, pid, timeout, t0 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
try:
    import pika
except ImportError:
    sys.stderr.write("[servers] ERROR: python module pika not available (%s)\n" % sys.executable)
    sys.exit(3)
import logging
logging.getLogger("pika").setLevel(logging.CRITICAL)

def alive():
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st not in ("Z", "X")
    except OSError:
        return False

deadline = t0 + timeout
params = pika.ConnectionParameters(host="127.0.0.1", port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=2, blocked_connection_timeout=2)
last = ""
while time.time() < deadline:
    if not alive():
        sys.stderr.write("[servers] ERROR: RabbitMQ (pid %d) exited during start-up\n" % pid)
        sys.exit(2)
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        ok = True
    except OSError as e:
        ok, last = False, "tcp: %s" % e
    finally:
        s.close()
    if ok:
        try:
            c = pika.BlockingConnection(params)
            c.close()
            sys.exit(0)
        except Exception as e:      # not fully booted yet / auth not ready
            last = "amqp: %r" % (e,)
    time.sleep(0.1)
sys.stderr.write("[servers] ERROR: RabbitMQ not accepting guest logins on 127.0.0.1:%d after %.0fs (%s)\n"
                 % (port, timeout, last))
sys.exit(1)
PY
    if [ "$rc" -ne 0 ]; then
        _srv_tail "$SERVERS_LOGDIR/rabbitmq.out"
        _srv_tail "$SERVERS_WORKDIR/rabbitmq/log/rabbit.log"
        return 1
    fi
}

_srv_mysql_launch() {
    local timeout=$1 d=$SERVERS_WORKDIR/mysql deadline
    if ! mariadb-install-db --no-defaults --user=root --datadir="$MYSQL_DATADIR" \
            --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
            >"$SERVERS_LOGDIR/mariadb-install-db.log" 2>&1; then
        _srv_err "mariadb-install-db failed"
        _srv_tail "$SERVERS_LOGDIR/mariadb-install-db.log"
        return 1
    fi
    mariadbd --no-defaults --user=root \
        --datadir="$MYSQL_DATADIR" --tmpdir="$d/tmp" \
        --bind-address=127.0.0.1 --port="$MYSQL_PORT" --socket="$MYSQL_SOCKET" \
        --pid-file="$d/mysqld.pid" --log-error="$SERVERS_LOGDIR/mariadbd.err" \
        --skip-name-resolve --skip-ssl \
        --general-log=1 --log-output=TABLE \
        --max-connections=300 \
        --innodb-buffer-pool-size=64M \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        --innodb-fast-shutdown=3 \
        </dev/null >"$SERVERS_LOGDIR/mariadbd.out" 2>&1 &
    MYSQL_PID=$!
    _srv_record mariadbd "$MYSQL_PID"

    deadline=$(( $(date +%s) + timeout ))
    until mariadb-admin --no-defaults --protocol=SOCKET --user=root --socket="$MYSQL_SOCKET" \
            --connect-timeout=1 ping >/dev/null 2>&1; do
        if ! _srv_alive "$MYSQL_PID"; then
            _srv_err "mariadbd (pid $MYSQL_PID) exited during start-up"
            _srv_tail "$SERVERS_LOGDIR/mariadbd.err"
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            _srv_err "mariadbd not answering on $MYSQL_SOCKET after ${timeout}s"
            _srv_tail "$SERVERS_LOGDIR/mariadbd.err"
            return 1
        fi
        sleep 0.1
    done

    local h u sql=""
    sql+="DELETE FROM mysql.global_priv WHERE User='';"   # no anonymous accounts
    sql+="CREATE DATABASE IF NOT EXISTS sbtest; CREATE DATABASE IF NOT EXISTS db_a;"
    sql+="CREATE DATABASE IF NOT EXISTS db_b; CREATE DATABASE IF NOT EXISTS db_c;"
    for h in 127.0.0.1 localhost %; do
        sql+="CREATE USER 'sbtest'@'$h' IDENTIFIED BY 'sbtest';"
        for u in sbtest db_a db_b db_c; do
            sql+="GRANT ALL ON \`$u\`.* TO 'sbtest'@'$h';"
        done
        sql+="CREATE USER 'mrte'@'$h' IDENTIFIED BY 'mrtepw';"
        sql+="GRANT PROCESS ON *.* TO 'mrte'@'$h';"
    done
    sql+="FLUSH PRIVILEGES;"
    if ! mysql_root -e "$sql" >>"$SERVERS_LOGDIR/mariadb-setup.log" 2>&1; then
        _srv_err "MariaDB account setup failed"
        _srv_tail "$SERVERS_LOGDIR/mariadb-setup.log"
        return 1
    fi
    # TCP readiness as the benchmark account
    if ! mysql_tcp sbtest sbtest --connect-timeout=5 -e 'SELECT 1' sbtest >/dev/null 2>>"$SERVERS_LOGDIR/mariadb-setup.log"; then
        _srv_err "cannot log in as sbtest over TCP 127.0.0.1:$MYSQL_PORT"
        _srv_tail "$SERVERS_LOGDIR/mariadb-setup.log"
        _srv_tail "$SERVERS_LOGDIR/mariadbd.err"
        return 1
    fi
}

_srv_write_env() {
    local v f=$SERVERS_WORKDIR/servers.env
    {
        echo "# written by tests/lib/servers.sh servers_start; source it from bash"
        for v in SERVERS_WORKDIR SERVERS_LOGDIR MYSQL_PORT MYSQL_SOCKET MYSQL_PID \
                 MYSQL_DATADIR MYSQL_ROOT_CMD AMQP_HOST AMQP_PORT AMQP_URL RMQ_NODE RMQ_PID \
                 RMQ_DIST_PORT RMQ_HOME EPMD_PID EPMD_PORT; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        declare -f mysql_root mysql_tcp
    } >"$f"
}

# ---------------------------------------------------------------------------
# servers_stop
# ---------------------------------------------------------------------------

servers_stop() {
    local - # keep the caller's shell options; be lenient in here
    set +e +u +o pipefail
    local w=${SERVERS_WORKDIR:-}
    [ -n "$w" ] || return 0
    local procs=$w/run/procs secs=${MRTE_TEST_STOP_TIMEOUT:-10} status=0
    local name pid start
    local -a main=() kids=()

    if [ -f "$procs" ]; then
        while read -r name pid start; do
            [ -n "$pid" ] || continue
            # process recorded before /proc had it? fall back to the PID alone
            main+=("$name:$pid:$start")
        done <"$procs"
    fi

    # collect descendants (erl_child_setup, inet_gethost, ...) of what we started
    local m d_pid d_start
    for m in "${main[@]}"; do
        IFS=: read -r name pid start <<<"$m"
        _srv_alive "$pid" "$start" || continue
        while read -r d_pid d_start; do
            [ -n "$d_pid" ] && kids+=("$d_pid:$d_start")
        done < <(_srv_descendants "$pid")
    done

    # graceful: TERM rabbitmq + mariadbd first, epmd last
    local phase
    for phase in servers epmd; do
        local -a targets=()
        for m in "${main[@]}"; do
            IFS=: read -r name pid start <<<"$m"
            if [ "$phase" = epmd ] && [ "$name" != epmd ]; then continue; fi
            if [ "$phase" = servers ] && [ "$name" = epmd ]; then continue; fi
            if _srv_alive "$pid" "$start"; then
                kill -TERM "$pid" 2>/dev/null
                targets+=("$name:$pid:$start")
            fi
        done
        for m in "${targets[@]}"; do
            IFS=: read -r name pid start <<<"$m"
            if ! _srv_wait_gone "$pid" "$start" "$secs"; then
                _srv_log "$name (pid $pid) did not stop within ${secs}s, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null
                if ! _srv_wait_gone "$pid" "$start" 5; then
                    _srv_err "$name (pid $pid) survived SIGKILL"
                    status=1
                fi
            fi
        done
    done

    # leftover children of the beam (normally they exit with it)
    for m in "${kids[@]}"; do
        IFS=: read -r pid start <<<"$m"
        if _srv_alive "$pid" "$start"; then
            kill -TERM "$pid" 2>/dev/null
            if ! _srv_wait_gone "$pid" "$start" 3; then
                kill -KILL "$pid" 2>/dev/null
                _srv_wait_gone "$pid" "$start" 3 || { _srv_err "child pid $pid survived SIGKILL"; status=1; }
            fi
        fi
    done

    # reap our own background jobs (avoid zombies in long-lived shells)
    for m in "${main[@]}"; do
        IFS=: read -r name pid start <<<"$m"
        wait "$pid" 2>/dev/null
    done

    if [ "${MRTE_TEST_KEEP:-0}" = 1 ]; then
        _srv_log "MRTE_TEST_KEEP=1: keeping $w"
    elif [ -f "$w/$_SRV_MARKER" ] && [ "$w" != / ]; then
        rm -rf -- "$w" || status=1
    else
        _srv_log "not removing $w (no $_SRV_MARKER marker)"
    fi
    unset SERVERS_WORKDIR
    _srv_log "servers stopped"
    return $status
}

# ---------------------------------------------------------------------------
# ground truth from mysql.general_log
# ---------------------------------------------------------------------------

general_log_reset() {
    mysql_root -e 'SET SESSION sql_log_off=1; TRUNCATE TABLE mysql.general_log'
}

# general_log_dump USER OUTFILE
# Rows are emitted in the order of the CSV file, i.e. the order the server
# logged them: the CSV engine has no indexes, so a plain full-scan SELECT
# without ORDER BY (and without joins that could reorder) returns insertion
# order.  Thread selection is done in awk on the client side for that reason.
# Threads whose Connect row was truncated away (connected before
# general_log_reset) are not included.
general_log_dump() {
    local user=${1:?usage: general_log_dump USER OUTFILE} out=${2:?usage: general_log_dump USER OUTFILE}
    local uhex tmp rc=0
    uhex=$(printf '%s' "$user" | od -An -v -tx1 | tr -d ' \n')
    tmp=$(mktemp "${SERVERS_WORKDIR:-/tmp}/glog.XXXXXX") || return 1
    mysql_root --batch --skip-column-names --raw -e "SET SESSION sql_log_off=1;
        SELECT thread_id, command_type, HEX(argument),
               command_type = 'Connect' AND SUBSTRING_INDEX(argument, '@', 1) = UNHEX('$uhex')
        FROM mysql.general_log" >"$tmp" || rc=$?
    if [ "$rc" -ne 0 ]; then
        _srv_err "general_log_dump: query failed"
        rm -f "$tmp"
        return 1
    fi
    awk -F'\t' -v OFS='\t' '
        NR == FNR { if ($4 == 1) want[$1] = 1; next }
        ($1 in want) { print $1, $2, $3 }
    ' "$tmp" "$tmp" >"$out" || rc=$?
    rm -f "$tmp"
    return "$rc"
}

# ---------------------------------------------------------------------------
# sysbench
# ---------------------------------------------------------------------------

_SRV_SYSBENCH_COMMON=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=sbtest
    --mysql-password=sbtest --mysql-db=sbtest --tables=2 --table-size=2000
    --db-ps-mode=disable --mysql-ssl=off --report-interval=0)

sysbench_prepare() {
    local log=$SERVERS_LOGDIR/sysbench-prepare.log
    if ! { sysbench oltp_read_write "${_SRV_SYSBENCH_COMMON[@]}" --mysql-port="$MYSQL_PORT" cleanup &&
           sysbench oltp_read_write "${_SRV_SYSBENCH_COMMON[@]}" --mysql-port="$MYSQL_PORT" prepare; } \
            >"$log" 2>&1; then
        _srv_err "sysbench prepare failed"
        _srv_tail "$log"
        return 1
    fi
}

# sysbench_run SECONDS THREADS [EXTRA ARGS...] -> prints transaction count
sysbench_run() {
    local secs=${1:?usage: sysbench_run SECONDS THREADS [extra args]}
    local threads=${2:?usage: sysbench_run SECONDS THREADS [extra args]}
    shift 2
    local log n
    log=$(mktemp "$SERVERS_LOGDIR/sysbench-run.XXXXXX") || return 1
    mv "$log" "$log.log" && log=$log.log
    if ! sysbench oltp_read_write "${_SRV_SYSBENCH_COMMON[@]}" --mysql-port="$MYSQL_PORT" \
            --time="$secs" --threads="$threads" "$@" run >"$log" 2>&1; then
        _srv_err "sysbench run failed (log $log)"
        _srv_tail "$log"
        return 1
    fi
    n=$(awk '$1 == "transactions:" { print $2; exit }' "$log")
    if [ -z "$n" ]; then
        _srv_err "could not parse transaction count from $log"
        _srv_tail "$log"
        return 1
    fi
    printf '%s\n' "$n"
}
