#!/usr/bin/env bash
# ferry vs coturn, side by side, with the same generator (`ferry bench`):
#
#   bash scripts/bench-vs-coturn.sh                      # ferry vs three coturns
#   ROUNDS=3 bash scripts/bench-vs-coturn.sh
#   COTURN=/usr/bin/turnserver bash scripts/bench-vs-coturn.sh   # one coturn
#   SCENARIOS="cpu max" FERRY_ARGS="--udp-sockets 2" bash scripts/bench-vs-coturn.sh
#   NETNS=1 OFFLOAD=tc ROUNDS=3 bash scripts/bench-vs-coturn.sh   # kernel fast path
#
# As root on Debian. Builds ferry; by default builds coturn 4.17.1 from the
# archived release (COTURN_BUILD, into COTURN_DIR) and installs Debian's
# coturn 4.6.1 when missing, and compares ferry with three coturns:
#
#   4.17.1      coturn 4.17.1 with its defaults
#   4.17.1-gso  the same with --multiplex-peer --udp-gso (one shared relay
#               socket per thread, sendmmsg batching and UDP GSO; both flags
#               exist under these names in 4.17.1)
#   4.6.1       Debian bookworm's coturn
#
# ferry runs with its kernel fast path off (--relay-offload off) unless
# OFFLOAD names a mode (tc, xdp or auto; it needs NETNS=1, since the fast
# path attaches to the veth and never to the host's interfaces): then the
# first column is ferry with the fast path and a second, ferry-user, is the
# same binary relaying in user space. Each ferry column gets its own ratio
# against the best coturn, with the goals of its path.
#
# Every round starts a fresh process of every server (ferry and each coturn,
# all at once, each listening on its own 127.0.0.1 port with relays on its own
# address), runs each scenario against each server in turn (ferry first in
# odd rounds, last in even ones), and stops them. Servers are restarted after
# the rss scenario so that 20,000 allocations' worth of tables and heap do not
# weigh on the later scenarios. At the end it prints, for each target, ferry's
# median and the best coturn's median (lowest CPU or RSS or RTT, highest
# rate) with min-max spread over the rounds, the ratio of the medians, the
# target and MET/MISSED, and every coturn's median below it. Raw JSON reports
# and server logs stay in $OUT.
#
# Scenarios (`ferry bench` flags; each run also gets --user u --password p
# --realm bench --server-pid PID --local-ip 127.0.0.2 --cgroup CG --json):
#
#   rss     --mode idle --allocations $RSS_ALLOCS (20000) --duration 5s:
#           server RSS growth per idle allocation (each with a permission and
#           a channel), read after holding them 5 s.
#   rtt     --allocations 1 --size 200 --rate 100 --duration 5s: RTT p50.
#   cpu     --allocations 20 --size 200 --rate 500 --duration ${CPU_SECS}s:
#           server CPU per relayed packet (/proc/PID/stat); and the cgroup
#           holding server and generator, plus ksoftirqd: CPU per relayed
#           packet of the whole machine's work; and the RTT p50 at that rate.
#   max     peak relayed packets/s with < 1% loss, searched: a closed-loop
#           run (--rate 0 --window 32) estimates capacity, then open-loop
#           runs at fixed offered rates (--rate R --io blocking --tick 5ms,
#           20 allocations, 200 B, MAX_STEP_SECS each) go up or down in 15%
#           steps from it until the loss crosses 1%, then bisect between the
#           highest passing and the lowest failing rate (MAX_STEPS runs in
#           all). Every run with < 1% loss, the closed-loop one included,
#           witnesses its relayed rate; the result is the highest. Open loop
#           because a window is self-clocking: a slow server gets less
#           offered instead of losing packets. A run where the generator
#           could not offer the rate asked (it shares the cores) ends the
#           climb and is flagged GENERATOR-LIMITED (a lower bound).
#   allocs  --mode allocs --allocations 8 --count 10000 --duration 5s:
#           allocations opened and released per second, and server CPU per
#           allocation.
#
# Addresses and ports. Servers listen on 127.0.0.1 (random free ports in
# 2000-9999). Each server relays from its own address, 127.0.1.N, with ports
# 10000-31999 (22,000 ports: enough for the 20,000 allocations of rss): the
# ranges are disjoint as addresses even though the numbers repeat, and lie
# below the kernel's ephemeral range. The generator binds its client sockets
# and echo peers to 127.0.0.2, so its ephemeral ports (32768-60999) never
# meet a relay port; allocs mode uses its own 127.x.y.z sources. A coturn
# with --multiplex-peer gets a free --multiplex-peer-port unless you give one.
#
# File descriptors: the script raises `ulimit -n` to NOFILE (65536) for
# itself and so for the servers and the generator (which raises its own
# limit as needed too). Without CAP_SYS_RESOURCE the hard limit cannot be
# raised; then rss uses as many allocations as fit (hard limit - 500) and
# says so.
#
# Whole-machine CPU: each server runs in its own cgroup (v2 under the
# cgroup2 mount; v1 cpuacct as a fallback), and each `ferry bench` run joins
# the cgroup of the server it loads, so the cgroup's CPU is server plus
# generator, including kernel work done in either one's context (on loopback
# the sender delivers to the receiver). The ksoftirqd threads' time is added
# (machine-wide). CPU per relayed packet of the server alone comes from
# /proc/PID/stat.
#
# Not part of the test suite: a round takes about 3.5 minutes with the three
# coturns, and wants an otherwise idle machine (the load average is printed
# before and after). Every load run is bounded in time (and count); servers,
# cgroups and namespaces are removed on exit, whatever happens. Traffic stays
# on 127.0.0.0/8 (or, with NETNS=1, inside the script's own namespaces).
#
# Knobs (environment):
#   ROUNDS        rounds (default 2)
#   SCENARIOS     scenarios, in order (default "rss rtt cpu max allocs")
#   OUT           directory for JSON reports and logs (default: a new temp dir)
#   FERRY_ARGS    extra arguments appended to `ferry serve`; FERRY_* env
#                 reaches ferry unchanged
#   OFFLOAD       tc, xdp or auto: ferry with its kernel fast path, and a
#                 ferry-user column without it (needs NETNS=1)
#   FERRY_LOG     ferry's --log-level (default info, its default)
#   COTURN        one turnserver to compare with (instead of the default three)
#   COTURN_ARGS   extra arguments for COTURN
#   COTURNS       several, ';'-separated, each NAME=PATH [ARGS...], e.g.
#                 "4.17.1=/opt/coturn-4.17.1/bin/turnserver;
#                  4.17.1-gso=/opt/coturn-4.17.1/bin/turnserver --multiplex-peer --udp-gso;
#                  4.6.1=/usr/bin/turnserver"  (the default; no spaces in PATH)
#   COTURN_DIR    where the default 4.17.1 is built (/opt/coturn-4.17.1)
#   COTURN_BUILD  its build script (/work/shared/anchors/build-coturn.sh)
#   CPU_SECS      length of the cpu scenario (default 10)
#   RSS_ALLOCS    allocations held in rss (default 20000)
#   NOFILE        ulimit -n wanted (default 65536)
#   MAX_STEPS     open-loop runs per max search (default 7)
#   MAX_STEP_SECS length of each max search run (default 3)
#   MAX_TICK      pacing tick of the open-loop runs (default 5ms)
#   NETNS=1       servers in one network namespace, the generator in another,
#                 joined by a veth pair (198.18.0.0/24); default: loopback
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
CPU_SECS=${CPU_SECS:-10}
FERRY_LOG=${FERRY_LOG:-info}
FERRY_ARGS=${FERRY_ARGS:-}
RSS_ALLOCS=${RSS_ALLOCS:-20000}
NOFILE=${NOFILE:-65536}
MAX_STEPS=${MAX_STEPS:-7}
MAX_STEP_SECS=${MAX_STEP_SECS:-3}
MAX_TICK=${MAX_TICK:-5ms}
NETNS=${NETNS:-0}
OFFLOAD=${OFFLOAD:-}
COTURN_DIR=${COTURN_DIR:-/opt/coturn-4.17.1}
COTURN_BUILD=${COTURN_BUILD:-/work/shared/anchors/build-coturn.sh}
OUT=${OUT:-$(mktemp -d /tmp/ferry-bench.XXXXXX)}
mkdir -p "$OUT"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

log() { printf '%s\n' "$*" >&2; }
die() {
	log "bench-vs-coturn: $*"
	exit 1
}

read -r -a SCENARIOS <<<"${SCENARIOS:-rss rtt cpu max allocs}"
for sc in "${SCENARIOS[@]}"; do
	case $sc in
	rss | rtt | cpu | max | allocs) ;;
	*) die "SCENARIOS: unknown scenario '$sc'; choose from rss rtt cpu max allocs" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive integer"
case $OFFLOAD in
'' | tc | xdp | auto) ;;
*) die "OFFLOAD=$OFFLOAD: want tc, xdp or auto" ;;
esac
[[ -z $OFFLOAD ]] || ((NETNS)) || die "OFFLOAD=$OFFLOAD needs NETNS=1: the fast path attaches to the veth between the script's namespaces, never to this host's interfaces"

# ------------------------------------------------------------- dependencies

if ! command -v jq >/dev/null 2>&1; then
	log "installing jq"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }
fi
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is needed to find free ports"

# The servers: S_NAME/S_KIND/S_BIN/S_ARGS; the ferry columns first, then
# the coturns.
if [[ -n $OFFLOAD ]]; then
	S_NAME=(ferry ferry-user)
	S_KIND=(ferry ferry)
	S_BIN=("" "")
	S_ARGS=("--relay-offload $OFFLOAD $FERRY_ARGS" "--relay-offload off $FERRY_ARGS")
else
	S_NAME=(ferry)
	S_KIND=(ferry)
	S_BIN=("")
	S_ARGS=("--relay-offload off $FERRY_ARGS")
fi
NF=${#S_NAME[@]}
add_coturn() { # NAME PATH [ARGS...]
	local name=$1 bin=$2
	shift 2
	[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "coturn name '$name': use letters, digits, '.', '_', '-'"
	[[ $name != ferry* ]] || die "coturn name '$name': names starting with ferry are taken"
	[[ -x $bin ]] || die "coturn '$name': $bin is not an executable"
	S_NAME+=("$name")
	S_KIND+=(coturn)
	S_BIN+=("$bin")
	S_ARGS+=("$*")
}
ensure_debian_coturn() {
	[[ -x /usr/bin/turnserver ]] && return
	log "installing Debian's coturn"
	bash scripts/install-test-deps.sh coturn
}
ensure_coturn_417() {
	[[ -x $COTURN_DIR/bin/turnserver ]] && return
	[[ -f $COTURN_BUILD ]] || die "no $COTURN_DIR/bin/turnserver and no $COTURN_BUILD to build it; set COTURNS or COTURN"
	log "building coturn 4.17.1 into $COTURN_DIR (a few minutes, once)"
	bash "$COTURN_BUILD" "$COTURN_DIR" >"$OUT/coturn-build.log" 2>&1 || die "coturn build failed; see $OUT/coturn-build.log"
}
if [[ -n ${COTURN:-} ]]; then
	[[ -x $COTURN ]] || die "COTURN=$COTURN is not an executable"
	v=$("$COTURN" --version 2>&1 | head -1 | tr -c 'A-Za-z0-9._\n-' _)
	# shellcheck disable=SC2086 # COTURN_ARGS holds several words
	add_coturn "${v:-coturn}" "$COTURN" ${COTURN_ARGS:-}
else
	if [[ -z ${COTURNS:-} ]]; then
		ensure_coturn_417
		ensure_debian_coturn
		COTURNS="4.17.1=$COTURN_DIR/bin/turnserver; 4.17.1-gso=$COTURN_DIR/bin/turnserver --multiplex-peer --udp-gso; 4.6.1=/usr/bin/turnserver"
	fi
	IFS=$';\n' read -r -d '' -a specs <<<"$COTURNS" || true
	for spec in "${specs[@]}"; do
		spec=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$spec")
		[[ -n $spec ]] || continue
		[[ $spec == *=* ]] || die "COTURNS entry '$spec': want NAME=PATH [ARGS...]"
		read -r -a words <<<"${spec#*=}"
		add_coturn "${spec%%=*}" "${words[@]}"
	done
fi
((${#S_NAME[@]} > NF)) || die "no coturn to compare with"
NS=${#S_NAME[@]}

FERRY=$OUT/ferry
log "building ferry into $FERRY"
go build -o "$FERRY" ./cmd/ferry

# ------------------------------------------------------------- limits

NOTES=()
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < NOFILE)); then
	if ulimit -Hn "$NOFILE" 2>/dev/null; then
		hard=$NOFILE
	else
		NOTES+=("ulimit -n: hard limit $hard, cannot raise it to $NOFILE (no CAP_SYS_RESOURCE)")
	fi
fi
if [[ $hard == unlimited ]] || ((hard >= NOFILE)); then ulimit -Sn "$NOFILE"; else ulimit -Sn "$hard"; fi
NOFILE_NOW=$(ulimit -Sn)
RSS_N=$RSS_ALLOCS
if ((RSS_N + 500 > NOFILE_NOW)); then
	RSS_N=$(((NOFILE_NOW - 500) / 500 * 500))
	NOTES+=("rss holds $RSS_N allocations, not $RSS_ALLOCS: every server and the generator need one descriptor per allocation and RLIMIT_NOFILE is $NOFILE_NOW")
fi

# ------------------------------------------------------------- network

LISTEN_IP=127.0.0.1
GEN_IP=127.0.0.2
RELAY_PORT_MIN=10000
RELAY_PORT_MAX=31999
SRV_EXEC=()
GEN_EXEC=()
GEN_FLAGS=(--local-ip "$GEN_IP")
FERRY_PEERS=(--allow-loopback-peers)
COTURN_PEERS=(--allow-loopback-peers)
relay_ip() { echo "127.0.1.$(($1 + 1))"; } # server index -> relay address

NETNS_SRV='' NETNS_GEN=''
netns_up() {
	command -v ip >/dev/null 2>&1 || die "NETNS=1 needs ip (iproute2)"
	NETNS_SRV=fbsrv$$ NETNS_GEN=fbgen$$
	ip netns add "$NETNS_SRV"
	ip netns add "$NETNS_GEN"
	ip link add "vs$$" netns "$NETNS_SRV" type veth peer name "vg$$" netns "$NETNS_GEN"
	local i
	ip -n "$NETNS_SRV" addr add 198.18.0.1/24 dev "vs$$"
	for ((i = 0; i < NS; i++)); do
		ip -n "$NETNS_SRV" addr add "198.18.0.$((11 + i))/24" dev "vs$$"
	done
	ip -n "$NETNS_GEN" addr add 198.18.0.2/24 dev "vg$$"
	for ns in "$NETNS_SRV" "$NETNS_GEN"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$NETNS_SRV" link set "vs$$" up
	ip -n "$NETNS_GEN" link set "vg$$" up
	# allocs mode draws a new source address per attempt from 198.19.0.0/16:
	# local to the generator's namespace (AnyIP), routed back by the servers'.
	ip -n "$NETNS_GEN" route add local 198.19.0.0/16 dev lo
	ip -n "$NETNS_SRV" route add 198.19.0.0/16 via 198.18.0.2
	LISTEN_IP=198.18.0.1
	GEN_IP=198.18.0.2
	# nsenter switches only the network namespace: `ip netns exec` would
	# also remount /sys, hiding the cgroup files from the generator.
	SRV_EXEC=(nsenter "--net=/run/netns/$NETNS_SRV")
	GEN_EXEC=(nsenter "--net=/run/netns/$NETNS_GEN")
	GEN_FLAGS=(--local-ip "$GEN_IP" --source-net 198.19.0.0/16 --allow-remote)
	FERRY_PEERS=(--allowed-peers 198.18.0.0/24)
	COTURN_PEERS=(--allowed-peer-ip=198.18.0.2)
	relay_ip() { echo "198.18.0.$((11 + $1))"; }
}
netns_down() {
	[[ -n $NETNS_SRV ]] || return 0
	ip netns del "$NETNS_SRV" 2>/dev/null || true
	ip netns del "$NETNS_GEN" 2>/dev/null || true
	NETNS_SRV=
}

# ------------------------------------------------------------- cgroups

CG_BASE=
S_CG=()
cgroups_up() {
	local root
	root=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -1)
	if [[ -z $root || ! -f $root/cgroup.procs ]]; then
		root=$(findmnt -n -t cgroup -O cpuacct -o TARGET 2>/dev/null | head -1)
	fi
	if [[ -z $root ]] || ! mkdir "$root/ferry-bench-$$" 2>/dev/null; then
		NOTES+=("no writable cgroup2 or cpuacct hierarchy: no whole-machine CPU figures")
		return
	fi
	CG_BASE=$root/ferry-bench-$$
	local i
	for ((i = 0; i < NS; i++)); do
		mkdir "$CG_BASE/${S_NAME[i]}"
		S_CG[i]=$CG_BASE/${S_NAME[i]}
	done
}
cgroups_down() {
	[[ -n $CG_BASE && -d $CG_BASE ]] || return 0
	local d
	for d in "$CG_BASE"/*/; do
		[[ -d $d ]] && { rmdir "$d" 2>/dev/null || log "cgroup $d still busy"; }
	done
	rmdir "$CG_BASE" 2>/dev/null || true
	CG_BASE=
}

# ------------------------------------------------------------- servers

S_PID=()
S_PORT=()

stop_servers() {
	local i p
	for ((i = 0; i < NS; i++)); do
		p=${S_PID[i]:-}
		[[ -n $p ]] || continue
		# SIGINT: ferry closes at once (SIGTERM would drain); coturn exits.
		if [[ ${S_KIND[i]} == ferry ]]; then kill -INT "$p" 2>/dev/null || true; else kill -TERM "$p" 2>/dev/null || true; fi
	done
	for ((i = 0; i < NS; i++)); do
		p=${S_PID[i]:-}
		[[ -n $p ]] || continue
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
		S_PID[i]=
	done
}
cleanup() {
	stop_servers
	cgroups_down
	netns_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_srv() { "${SRV_EXEC[@]}" "$@"; }

# free_port: a port free for UDP and TCP where the servers live, below the
# relay ranges and the ephemeral range, not handed out before in this run.
USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 500); do
		p=$((2000 + RANDOM % 8000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(in_srv ss -Hlnu "sport = :$p") && -z $(in_srv ss -Hlnt "sport = :$p") ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

# wait_udp PORT PID NAME: until something listens on UDP PORT.
wait_udp() {
	for _ in $(seq 200); do
		kill -0 "$2" 2>/dev/null || die "$3 exited at start; see $OUT/$3-*.log"
		[[ -n $(in_srv ss -Hlnu "sport = :$1") ]] && return
		sleep 0.05
	done
	die "$3 does not listen on udp port $1"
}

# spawn CG LOGFILE CMD...: starts CMD in cgroup CG (and the servers' network
# namespace) in the background; the pid stays the command's (exec).
spawn() {
	local cg=$1 logf=$2
	shift 2
	(
		[[ -z $cg ]] || echo "$BASHPID" >"$cg/cgroup.procs"
		exec "${SRV_EXEC[@]}" "$@"
	) >"$logf" 2>&1 &
}

coturn_cli_off_by_default() { "$1" --help 2>&1 | grep -q 'Turn ON the CLI support'; }

# spawn_server IDX TAG: starts server IDX (not waiting for it).
spawn_server() {
	local i=$1 tag=$2 name=${S_NAME[$1]} port args
	port=$(free_port)
	S_PORT[i]=$port
	read -r -a args <<<"${S_ARGS[i]}"
	if [[ ${S_KIND[i]} == ferry ]]; then
		spawn "${S_CG[i]:-}" "$OUT/$name-$tag.log" "$FERRY" serve \
			--listen "udp://$LISTEN_IP:$port" --listen "tcp://$LISTEN_IP:$port" \
			--relay-ip "$(relay_ip "$i")" --relay-ports "$RELAY_PORT_MIN-$RELAY_PORT_MAX" "${FERRY_PEERS[@]}" \
			--user u=p --realm bench --log-level "$FERRY_LOG" \
			--quota-user-allocations 0 --limits-allocate-rate 0 \
			"${args[@]}"
	else
		local extra=()
		coturn_cli_off_by_default "${S_BIN[i]}" || extra+=(--no-cli)
		if [[ " ${args[*]} " == *" --multiplex-peer "* && " ${args[*]} " != *"--multiplex-peer-port"* ]]; then
			local mp
			mp=$(free_port)
			while [[ -n $(in_srv ss -Hlnu "sport >= :$mp and sport <= :$((mp + 7))") ]]; do mp=$(free_port); done
			USED_PORTS+="$((mp + 1)) $((mp + 2)) $((mp + 3)) $((mp + 4)) $((mp + 5)) $((mp + 6)) $((mp + 7)) "
			extra+=(--multiplex-peer-port "$mp")
		fi
		spawn "${S_CG[i]:-}" "$OUT/$name-$tag.out" "${S_BIN[i]}" -n \
			--listening-ip "$LISTEN_IP" --listening-port "$port" \
			--relay-ip "$(relay_ip "$i")" --min-port "$RELAY_PORT_MIN" --max-port "$RELAY_PORT_MAX" "${COTURN_PEERS[@]}" \
			--lt-cred-mech --user u:p --realm bench \
			--no-tls --no-dtls "${extra[@]}" \
			--log-file "$OUT/$name-$tag.log" --simple-log --no-stdout-log \
			--pidfile "$OUT/$name-$tag.pid" \
			"${args[@]}"
	fi
	S_PID[i]=$!
}

start_servers() { # TAG
	local tag=$1 i
	USED_PORTS=" "
	for ((i = 0; i < NS; i++)); do
		spawn_server "$i" "$tag"
	done
	for ((i = 0; i < NS; i++)); do
		wait_udp "${S_PORT[i]}" "${S_PID[i]}" "${S_NAME[i]}"
	done
	sleep 1 # coturn opens its relay threads' sockets after the listeners
	for ((i = 0; i < NS; i++)); do
		kill -0 "${S_PID[i]}" 2>/dev/null || die "${S_NAME[i]} exited at start; see $OUT/${S_NAME[i]}-$tag.*"
	done
}

# ensure_alive IDX ROUND: restarts server IDX if it is gone (another
# process on a shared machine may kill it), and says so.
RESTARTS=0
ensure_alive() {
	local i=$1 pid=${S_PID[$1]}
	kill -0 "$pid" 2>/dev/null && return
	wait "$pid" 2>/dev/null || true
	RESTARTS=$((RESTARTS + 1))
	local tag=$2-restart$RESTARTS
	log "  ${S_NAME[i]} (pid $pid) is gone (its last log lines: $OUT/${S_NAME[i]}-*); starting a fresh one ($tag)"
	NOTES+=("${S_NAME[i]} (pid $pid) died in round $2 and was restarted; see its log")
	spawn_server "$i" "$tag"
	wait_udp "${S_PORT[i]}" "${S_PID[i]}" "${S_NAME[i]}"
	sleep 1
}

# ------------------------------------------------------------- scenarios

declare -A FLAGS=(
	[rss]="--mode idle --allocations $RSS_N --duration 5s"
	[rtt]="--allocations 1 --size 200 --rate 100 --duration 5s"
	[cpu]="--allocations 20 --size 200 --rate 500 --duration ${CPU_SECS}s"
	[allocs]="--mode allocs --allocations 8 --count 10000 --duration 5s"
)
MAX_FLAGS="--allocations 20 --size 200 --duration ${MAX_STEP_SECS}s"

# gen IDX FILE FLAGS...: one `ferry bench` run against server IDX, in its
# cgroup, JSON into FILE ("null" when it failed).
gen() {
	local i=$1 file=$2 cg=${S_CG[$1]:-}
	shift 2
	local cgflag=()
	[[ -z $cg ]] || cgflag=(--cgroup "$cg")
	if ! (
		[[ -z $cg ]] || echo "$BASHPID" >"$cg/cgroup.procs"
		exec timeout 300 "${GEN_EXEC[@]}" "$FERRY" bench "turn://$LISTEN_IP:${S_PORT[i]}" \
			--user u --password p --realm bench --server-pid "${S_PID[i]}" \
			"${GEN_FLAGS[@]}" "${cgflag[@]}" --json "$@"
	) >"$file" 2>"$file.err"; then
		log "  bench against ${S_NAME[i]} failed: $(tail -1 "$file.err" | tr -d '\0')"
		echo "null" >"$file"
		return 1
	fi
}

# detail FILE: one line of what else the report says.
detail() {
	jq -r '[
		(if .relay then "loss \(.relay.loss_pct)%, rtt p50/p99 \(.relay.rtt.p50_us)/\(.relay.rtt.p99_us)µs, \(.relay.relayed_pps) pps" else empty end),
		(if .allocs then "failed \(.allocs.failed)" else empty end),
		(if .idle then "opened \(.idle.opened) in \(.idle.setup_seconds)s, failed \(.idle.failed)" else empty end),
		(if .server then "server cpu \(.server.cpu_pct)%" else empty end),
		(if .server.cpu_us_per_allocation then "server \(.server.cpu_us_per_allocation)µs/alloc" else empty end),
		(if .generator then "generator cpu \(.generator.cpu_pct)%" else empty end),
		(if .cgroup.cpu_us_per_packet then "cgroup \(.cgroup.cpu_us_per_packet)µs/pkt +ksoftirqd \(.cgroup.with_ksoftirqd_us_per_packet)" else empty end),
		(if .cgroup.cpu_us_per_allocation then "cgroup \(.cgroup.cpu_us_per_allocation)µs/alloc" else empty end),
		(if .cgroup then "others \(.cgroup.other_cpu_pct)%" else empty end),
		((.warnings // [])[] | "WARN: " + .)
	] | join(", ")' "$1" 2>/dev/null || true
}

# step IDX ROUND K FLAGS...: one run of the max search; prints "VERDICT
# RELAYED_PPS" where VERDICT is pass (loss < 1%), short (passed, but the
# generator offered < 95% of the rate asked: it, not the server, was the
# limit), fail, or error (the run itself failed, e.g. at setup).
step() {
	local i=$1 round=$2 k=$3
	shift 3
	local file=$OUT/$round-max-${S_NAME[i]}-step$k.json
	# shellcheck disable=SC2086 # MAX_FLAGS holds several words
	gen "$i" "$file" $MAX_FLAGS "$@" || true
	jq -r 'if .relay == null then "error 0"
		elif .relay.sent == 0 then "fail 0"
		elif .relay.loss_pct >= 1 then "fail \(.relay.relayed_pps)"
		elif .rate_pps_per_allocation > 0 and .relay.offered_pps < 0.95 * .rate_pps_per_allocation * .allocations then "short \(.relay.relayed_pps)"
		else "pass \(.relay.relayed_pps)" end' "$file"
	printf '      step %s %-22s %s\n' "$k" "$*" "$(detail "$file")" >&2
}

# max_search IDX ROUND: the peak relayed packets/s with < 1% loss (see the
# header), summarised into $OUT/ROUND-max-NAME.json. Every run with < 1%
# loss witnesses its relayed rate, the closed-loop one included; the peak is
# the highest. The open-loop runs start at the closed-loop rate and go up
# 15% at a time while they pass (down while they fail), then bisect between
# the highest passing and the lowest failing rate to within 2%. When the
# generator cannot offer the rate asked (short), higher rates are not tried.
max_search() {
	local i=$1 round=$2 name=${S_NAME[$1]}
	local verdict pps k=0
	local best_pps=0 best_step="" short=false
	note() { # VERDICT PPS STEP
		[[ $1 == fail || $1 == error ]] && return
		# The climb stopped because the generator could not offer more:
		# the peak (from whichever run) is the generator's, a lower bound
		# of the server's.
		[[ $1 == short ]] && short=true
		if awk -v a="$2" -v b="$best_pps" 'BEGIN { exit !(a > b) }'; then
			best_pps=$2 best_step=$3
		fi
		return 0
	}
	ensure_alive "$i" "$round"
	read -r verdict pps < <(step "$i" "$round" w --rate 0 --window 32)
	if [[ $verdict == error ]]; then # once more: the start point matters
		ensure_alive "$i" "$round"
		read -r verdict pps < <(step "$i" "$round" w --rate 0 --window 32)
	fi
	note "$verdict" "$pps" w
	local wpps=$pps wverdict=$verdict
	# Round trips per allocation per second the window reached.
	local r r0 lo=0 hi=0
	r0=$(awk -v p="$pps" 'BEGIN { r = int(p / 40); print (r < 50 ? 50 : r) }')
	r=$r0
	while ((k < MAX_STEPS)); do
		k=$((k + 1))
		ensure_alive "$i" "$round"
		read -r verdict pps < <(step "$i" "$round" "$k" --rate "$r" --io blocking --tick "$MAX_TICK")
		note "$verdict" "$pps" "$k"
		case $verdict in
		pass) ((r > lo)) && lo=$r ;;
		short)
			((r > lo)) && lo=$r
			break # the generator is the limit from here up
			;;
		fail) ((hi == 0 || r < hi)) && hi=$r ;;
		error) continue ;; # no verdict on r: try it again
		esac
		if ((hi == 0)); then
			r=$(((r * 115 + 99) / 100))
		elif ((lo == 0)); then
			r=$((r * 100 / 115))
			((r * 4 >= r0)) || break # nothing passes even at a quarter
		else
			((hi - lo > lo / 50 && hi - lo > 1)) || break # within 2%
			r=$(((lo + hi) / 2))
		fi
	done
	local peakfile=/dev/null
	[[ -n $best_step ]] && peakfile=$OUT/$round-max-$name-step$best_step.json
	jq -n --argjson best "$best_pps" --arg step "$best_step" --argjson short "$short" \
		--argjson wpps "$wpps" --arg wverdict "$wverdict" --argjson lo "$lo" --argjson hi "$hi" \
		--slurpfile st "$peakfile" '
		{peak_relayed_pps: (if $step == "" then null else $best end),
		 peak_step: $step, generator_limited: $short,
		 passing_rate_per_allocation: $lo, failing_rate_per_allocation: $hi,
		 window_relayed_pps: $wpps, window_verdict: $wverdict,
		 peak: ($st[0] // null)}' >"$OUT/$round-max-$name.json"
}

# bench IDX SCENARIO ROUND: runs one scenario, saves the JSON, prints a line.
bench() {
	local i=$1 sc=$2 round=$3 name=${S_NAME[$1]} file
	file=$OUT/$round-$sc-$name.json
	ensure_alive "$i" "$round"
	if [[ $sc == max ]]; then
		max_search "$i" "$round"
	else
		# shellcheck disable=SC2086 # FLAGS holds several words
		gen "$i" "$file" ${FLAGS[$sc]} || true
	fi
	local v
	case $sc in
	rss) v=$(jq -r '.server.rss_kib_per_allocation // "n/a"' "$file") ;;
	rtt) v=$(jq -r '.relay.rtt.p50_us // "n/a"' "$file") ;;
	cpu) v=$(jq -r '.server.cpu_us_per_packet // "n/a"' "$file") ;;
	allocs) v=$(jq -r '.allocs.allocations_per_s // "n/a"' "$file") ;;
	max) v=$(jq -r '.peak_relayed_pps // "n/a"' "$file") ;;
	esac
	if [[ $sc == max ]]; then
		printf '  round %d  %-7s %-11s %12s   (%s)\n' "$round" "$sc" "$name" "$v" "$(jq -r '[
			"peak from step \(.peak_step), loss \(.peak.relay.loss_pct // "n/a")%",
			(if .generator_limited then "GENERATOR-LIMITED" else empty end),
			"open loop passes at \(.passing_rate_per_allocation)/alloc, fails at \(.failing_rate_per_allocation)",
			"window \(.window_relayed_pps) pps (\(.window_verdict))",
			(.peak.cgroup // empty | "cgroup \(.cpu_us_per_packet)µs/pkt +ksoftirqd \(.with_ksoftirqd_us_per_packet)")
		] | join(", ")' "$file")"
	else
		printf '  round %d  %-7s %-11s %12s   (%s)\n' "$round" "$sc" "$name" "$v" "$(detail "$file")"
	fi
}

((NETNS)) && netns_up
cgroups_up
[[ -z $OFFLOAD ]] || NOTES+=("the fast path's program stays attached to the servers' veth while the other servers run too: their packets pass through it as map misses")

printf '== ferry vs coturn on %s\n' "$(hostname)"
printf 'machine:  %s CPUs, %s, %s MiB\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))"
printf 'kernel:   %s\n' "$(uname -r)"
for ((i = 0; i < NF; i++)); do
	printf 'ferry:    %-11s %s (serve %s)\n' "${S_NAME[i]}" "$("$FERRY" version | head -1)" "${S_ARGS[i]}"
done
for ((i = NF; i < NS; i++)); do
	printf 'coturn:   %-11s %s %s (version %s)\n' "${S_NAME[i]}" "${S_BIN[i]}" "${S_ARGS[i]}" "$("${S_BIN[i]}" --version 2>&1 | head -1)"
done
printf 'network:  %s; servers on %s, relays on %s..%s ports %s-%s, generator on %s\n' \
	"$( ((NETNS)) && echo "veth between namespaces $NETNS_SRV/$NETNS_GEN" || echo loopback)" \
	"$LISTEN_IP" "$(relay_ip 0)" "$(relay_ip $((NS - 1)))" "$RELAY_PORT_MIN" "$RELAY_PORT_MAX" "$GEN_IP"
printf 'limits:   ulimit -n %s; cgroups %s\n' "$NOFILE_NOW" "${CG_BASE:-none}"
for n in "${NOTES[@]}"; do printf 'NOTE:     %s\n' "$n"; done
printf 'rounds:   %s, scenarios: %s\n' "$ROUNDS" "${SCENARIOS[*]}"
printf 'load:     %s (before)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'reports:  %s\n\n' "$OUT"

start=$SECONDS
for round in $(seq "$ROUNDS"); do
	rstart=$SECONDS
	start_servers "$round"
	if [[ -n $OFFLOAD && $round == 1 ]]; then
		for ((i = 0; i < NF; i++)); do
			printf '  %-11s %s\n' "${S_NAME[i]}" "$(grep -h -m1 'fast path' "$OUT/${S_NAME[i]}-$round.log" | cut -c1-200)"
		done
	fi
	order=()
	for ((i = 0; i < NS; i++)); do order+=("$i"); done
	if ((round % 2 == 0)); then
		rev=()
		for ((i = NS - 1; i >= 0; i--)); do rev+=("$i"); done
		order=("${rev[@]}")
	fi
	last=${SCENARIOS[${#SCENARIOS[@]} - 1]}
	for sc in "${SCENARIOS[@]}"; do
		for i in "${order[@]}"; do
			bench "$i" "$sc" "$round"
		done
		if [[ $sc == rss && $sc != "$last" ]]; then
			stop_servers
			start_servers "$round-after-rss"
		fi
	done
	stop_servers
	printf '  round %d took %ds, load %s\n' "$round" "$((SECONDS - rstart))" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
printf '\nload:     %s (after, %ds)\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$((SECONDS - start))"

# ------------------------------------------------------------- summary

# Rows: scenario, jq path, which coturn is best (min or max), goals, title.
ROWS=(cpu cpu_machine max max_machine rtt_load allocs allocs_cpu rss rtt)
declare -A R_SC=([cpu]=cpu [cpu_machine]=cpu [max]=max [max_machine]=max [rtt_load]=cpu [allocs]=allocs [allocs_cpu]=allocs [rss]=rss [rtt]=rtt)
declare -A R_PATH=(
	[cpu]=.server.cpu_us_per_packet
	[cpu_machine]=.cgroup.with_ksoftirqd_us_per_packet
	[max]=.peak_relayed_pps
	[max_machine]=.peak.cgroup.with_ksoftirqd_us_per_packet
	[rtt_load]=.relay.rtt.p50_us
	[allocs]=.allocs.allocations_per_s
	[allocs_cpu]=.server.cpu_us_per_allocation
	[rss]=.server.rss_kib_per_allocation
	[rtt]=.relay.rtt.p50_us
)
declare -A R_BEST=([cpu]=min [cpu_machine]=min [max]=max [max_machine]=min [rtt_load]=min [allocs]=max [allocs_cpu]=min [rss]=min [rtt]=min)
# Goals of ferry relaying in user space (the engine's issue) and with the
# kernel fast path (the fast path's issue: whole machine, peak, RTT under
# load); "info" rows are reported without a verdict.
declare -A R_GOAL=([cpu]="ratio<=0.7" [cpu_machine]=info [max]="ratio>=1.7" [max_machine]=info [rtt_load]=info [allocs]="ratio>=1.5" [allocs_cpu]="ratio<=0.5" [rss]="ferry<=4" [rtt]="ratio<=1")
declare -A R_GOAL_OFFLOAD=([cpu]=info [cpu_machine]="ratio<=0.5" [max]="ratio>=3" [max_machine]=info [rtt_load]="ratio<=0.1" [allocs]=info [allocs_cpu]=info [rss]=info [rtt]=info)
declare -A R_TITLE=(
	[cpu]="server CPU us/relayed pkt (20 x 500 pps, 200 B)"
	[cpu_machine]="  whole machine us/pkt (srv+gen cgroup+ksoftirqd)"
	[max]="peak relayed pkt/s with < 1% loss (20 allocs)"
	[max_machine]="  whole machine us/pkt in that peak run"
	[rtt_load]="RTT p50 us at 20 x 500 pps (the cpu runs)"
	[allocs]="allocations opened+released /s (8 clients)"
	[allocs_cpu]="  server CPU us per allocation"
	[rss]="RSS KiB per idle allocation ($RSS_N held)"
	[rtt]="RTT p50 us at light load (1 alloc, 100 pps)"
)

# stats ROW NAME: "median min max n" of the row's metric over the rounds.
stats() {
	local f
	for f in "$OUT"/*-"${R_SC[$1]}-$2".json; do
		[[ -e $f ]] || continue
		jq -r "${R_PATH[$1]} // empty" "$f" 2>/dev/null
	done | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan nan nan 0"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m, v[1], v[NR], NR }'
}

fmt() { # VALUE MIN MAX: "v [min-max]" with sensible digits
	awk -v v="$1" -v a="$2" -v b="$3" 'function f(x) { if (x == "nan") return "n/a"; x += 0
		if (x >= 1000) return sprintf("%.0f", x); if (x >= 100) return sprintf("%.1f", x); return sprintf("%.2f", x) }
		BEGIN { if (v == "nan") { print "n/a"; exit } printf "%s [%s-%s]", f(v), f(a), f(b) }'
}

printf '== summary: median [min-max] of %d round(s); ratio = ferry median / best coturn median\n' "$ROUNDS"
printf '%-50s %-11s %-24s %-24s %-11s %6s  %-11s %s\n' "target" "column" "ferry" "best coturn" "(which)" "ratio" "goal" "verdict"
for row in "${ROWS[@]}"; do
	[[ " ${SCENARIOS[*]} " == *" ${R_SC[$row]} "* ]] || continue
	best='' bm=nan ba=nan bb=nan others=''
	for ((i = NF; i < NS; i++)); do
		read -r m a b _ < <(stats "$row" "${S_NAME[i]}")
		others+="${S_NAME[i]} $(fmt "$m" "$a" "$b"); "
		[[ $m == nan ]] && continue
		if [[ -z $best ]] || awk -v m="$m" -v bm="$bm" -v d="${R_BEST[$row]}" 'BEGIN { exit !(d == "min" ? m < bm : m > bm) }'; then
			best=${S_NAME[i]} bm=$m ba=$a bb=$b
		fi
	done
	for ((i = 0; i < NF; i++)); do
		goal=${R_GOAL[$row]}
		[[ -n $OFFLOAD && ${S_NAME[i]} == ferry ]] && goal=${R_GOAL_OFFLOAD[$row]}
		read -r fm fa fb _ < <(stats "$row" "${S_NAME[i]}")
		read -r ratio verdict < <(awk -v f="$fm" -v c="$bm" -v g="$goal" 'BEGIN {
			if (f == "nan" || c == "nan" || c == 0) { r = "n/a" } else { r = sprintf("%.2f", f / c) }
			if (g == "info") { v = "(report only)" }
			else if (f == "nan") { v = "n/a" }
			else if (g ~ /^ferry<=/) { split(g, p, "<="); v = (f <= p[2]) ? "MET" : "MISSED" }
			else if (r == "n/a") { v = "n/a" }
			else if (g ~ /^ratio<=/) { split(g, p, "<="); v = (f / c <= p[2]) ? "MET" : "MISSED" }
			else if (g ~ /^ratio>=/) { split(g, p, ">="); v = (f / c >= p[2]) ? "MET" : "MISSED" }
			print r, v }')
		title=${R_TITLE[$row]}
		((i == 0)) || title=''
		printf '%-50s %-11s %-24s %-24s %-11s %6s  %-11s %s\n' "$title" "${S_NAME[i]}" "$(fmt "$fm" "$fa" "$fb")" "$(fmt "$bm" "$ba" "$bb")" "(${best:-none})" "$ratio" "$goal" "$verdict"
	done
	printf '%-50s   coturns: %s\n' "" "${others%; }"
done
if [[ " ${SCENARIOS[*]} " == *" max "* ]]; then
	limited=$(for f in "$OUT"/*-max-*.json; do
		[[ $f == *-step*.json ]] && continue
		jq -r --arg f "$(basename "$f" .json)" 'select(.generator_limited) | $f' "$f" 2>/dev/null
	done | tr '\n' ' ')
	[[ -z $limited ]] || NOTES+=("max: the generator, not the server, set the peak in: $limited(a lower bound for those)")
fi
disturbed=$( { grep -l 'results are disturbed' "$OUT"/*.json 2>/dev/null || true; } | xargs -r -n1 basename | sed 's/\.json$//' | tr '\n' ' ')
[[ -z $disturbed ]] || NOTES+=("other processes took > 20% of a core (or steal > 10%) during: $disturbed")
for n in "${NOTES[@]}"; do printf 'NOTE: %s\n' "$n"; done
