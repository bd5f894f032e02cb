#!/usr/bin/env bash
# ferry vs coturn, side by side on loopback, with the same generator:
#
#   bash scripts/bench-vs-coturn.sh
#
# Builds ferry, installs coturn (and jq) when missing, then for each round
# starts a fresh ferry and a fresh coturn on 127.0.0.1 with equivalent
# settings (one static long-term user, loopback peers allowed, UDP relays on
# 127.0.0.1 from disjoint port ranges, TCP+UDP listeners, no TLS/DTLS, logs
# to files, no per-user allocation quota and no Allocate rate limit: coturn
# has neither by default) and runs the same `ferry bench` scenarios against each in
# alternation (ferry, coturn; then coturn, ferry; ...). It prints every
# measurement, then the median per server and the ratio ferry/coturn with
# the issue 7 target. Raw JSON reports stay in $OUT.
#
# Not part of the test suite: it takes about 40 s per round and wants an
# otherwise idle machine (other load skews both servers). Both servers are
# stopped on exit, whatever happens.
#
# Knobs (environment):
#   ROUNDS      rounds of alternation (default 2)
#   CPU_SECS    duration of the CPU-per-packet scenario (default 10)
#   OUT         directory for JSON reports and logs (default: a new temp dir)
#   FERRY_LOG   ferry's --log-level (default info, its default; coturn also
#               runs with its default logging)
#   SCENARIOS   which scenarios, in order (default "rss rtt cpu max allocs")
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
CPU_SECS=${CPU_SECS:-10}
FERRY_LOG=${FERRY_LOG:-info}
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

# ------------------------------------------------------------- dependencies

if ! command -v turnserver >/dev/null 2>&1; then
	log "installing coturn"
	bash scripts/install-test-deps.sh coturn
fi
if ! command -v jq >/dev/null 2>&1; then
	log "installing jq"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }
fi
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is needed to find free ports"

FERRY=$OUT/ferry
log "building ferry into $FERRY"
go build -o "$FERRY" ./cmd/ferry

# ------------------------------------------------------------- servers

FERRY_PID=
COTURN_PID=

stop_servers() {
	local p
	for p in $FERRY_PID $COTURN_PID; do
		kill "$p" 2>/dev/null || true
	done
	for p in $FERRY_PID $COTURN_PID; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	FERRY_PID=
	COTURN_PID=
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

# free_port: a port free for both UDP and TCP on 127.0.0.1, below the relay
# ranges and the ephemeral range so that nothing else takes it.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((2000 + RANDOM % 8000))
		if [[ -z $(ss -Hlnu "sport = :$p") && -z $(ss -Hlnt "sport = :$p") ]]; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

# wait_udp PORT PID NAME: until something listens on UDP PORT.
wait_udp() {
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || die "$3 exited at start; see $OUT/$3-*.log"
		[[ -n $(ss -Hlnu "sport = :$1") ]] && return
		sleep 0.05
	done
	die "$3 does not listen on udp port $1"
}

# Relay ports: 11000 each, disjoint, below the ephemeral range (32768-60999)
# where the generator's own sockets live. coturn does not reuse a released
# relay port at once, so the allocs scenario is count-bounded below 11000.
FERRY_RELAYS=10000-20999
COTURN_MIN=21000
COTURN_MAX=31999

start_servers() { # ROUND
	FERRY_PORT=$(free_port)
	"$FERRY" serve \
		--listen "udp://127.0.0.1:$FERRY_PORT" --listen "tcp://127.0.0.1:$FERRY_PORT" \
		--relay-ip 127.0.0.1 --relay-ports "$FERRY_RELAYS" --allow-loopback-peers \
		--user u=p --realm bench --log-level "$FERRY_LOG" \
		--quota-user-allocations 0 --limits-allocate-rate 0 \
		>"$OUT/ferry-$1.log" 2>&1 &
	FERRY_PID=$!
	wait_udp "$FERRY_PORT" "$FERRY_PID" ferry

	COTURN_PORT=$(free_port)
	while [[ $COTURN_PORT == "$FERRY_PORT" ]]; do COTURN_PORT=$(free_port); done
	turnserver -n \
		--listening-ip 127.0.0.1 --listening-port "$COTURN_PORT" \
		--relay-ip 127.0.0.1 --min-port "$COTURN_MIN" --max-port "$COTURN_MAX" --allow-loopback-peers \
		--lt-cred-mech --user u:p --realm bench \
		--no-tls --no-dtls --no-cli \
		--log-file "$OUT/coturn-$1.log" --simple-log --no-stdout-log \
		--pidfile "$OUT/coturn-$1.pid" \
		>"$OUT/coturn-$1.out" 2>&1 &
	COTURN_PID=$!
	wait_udp "$COTURN_PORT" "$COTURN_PID" coturn
	sleep 0.5 # coturn opens its relay threads' sockets after the first
}

# ------------------------------------------------------------- scenarios

# Each scenario: name, the metric (a jq path), and ferry bench flags. rss
# runs first, on fresh processes: after churn, allocators reuse freed memory
# and the growth per allocation reads near zero. allocs runs last: it churns
# memory and relay ports.
declare -A METRIC=(
	[cpu]=.server.cpu_us_per_packet
	[max]=.relay.relayed_pps
	[allocs]=.allocs.allocations_per_s
	[rss]=.server.rss_kib_per_allocation
	[rtt]=.relay.rtt.p50_us
)
declare -A FLAGS=(
	[cpu]="--allocations 20 --size 200 --rate 500 --duration ${CPU_SECS}s"
	[max]="--allocations 20 --size 200 --rate 0 --window 32 --duration 5s"
	[allocs]="--mode allocs --allocations 8 --count 10000 --duration 5s"
	[rss]="--allocations 1000 --size 200 --rate 1 --duration 1s"
	[rtt]="--allocations 1 --size 200 --rate 100 --duration 5s"
)
declare -A TITLE=(
	[cpu]="server CPU per relayed packet (µs), 20 allocs, 200 B, 10k pps offered"
	[max]="max relayed packets/s (window 32 x 20 allocs)"
	[allocs]="allocations/s (8 concurrent clients, open+release, 10000)"
	[rss]="RSS growth per idle allocation (KiB, 1000 allocs)"
	[rtt]="RTT p50 at light load (µs, 1 alloc, 100 pps)"
)

# bench SERVER SCENARIO ROUND: runs one scenario, saves the JSON, prints
# the metric.
bench() {
	local server=$1 sc=$2 round=$3 port pid file
	if [[ $server == ferry ]]; then
		port=$FERRY_PORT pid=$FERRY_PID
	else
		port=$COTURN_PORT pid=$COTURN_PID
	fi
	file=$OUT/$round-$sc-$server.json
	# shellcheck disable=SC2086 # FLAGS holds several words
	if ! timeout 120 "$FERRY" bench "turn://127.0.0.1:$port" --user u --password p --realm bench \
		--server-pid "$pid" --json ${FLAGS[$sc]} >"$file" 2>"$file.err"; then
		log "  $sc on $server failed: $(tail -1 "$file.err")"
		echo "null" >"$file"
	fi
	local v
	v=$(jq -r "${METRIC[$sc]} // \"n/a\"" "$file")
	printf '  round %d  %-7s %-7s %12s' "$round" "$sc" "$server" "$v"
	jq -r '[
		(if .relay then "loss \(.relay.loss_pct)%, rtt p99 \(.relay.rtt.p99_us)µs, \(.relay.relayed_pps) pps" else empty end),
		(if .allocs then "failed \(.allocs.failed)" else empty end),
		(if .server then "server cpu \(.server.cpu_pct)%" else empty end),
		(if .generator then "generator cpu \(.generator.cpu_pct)%" else empty end),
		((.warnings // [])[] | "WARN: " + .)
	] | "   (" + join(", ") + ")"' "$file" 2>/dev/null || echo
}

printf '== ferry vs coturn on %s\n' "$(hostname)"
printf 'machine:  %s CPUs, %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
printf 'kernel:   %s\n' "$(uname -r)"
printf 'ferry:    %s\n' "$("$FERRY" version)"
printf 'coturn:   %s\n' "$(turnserver --version 2>&1 | head -1)"
printf 'load:     %s (before)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'reports:  %s\n\n' "$OUT"

start=$SECONDS
for round in $(seq "$ROUNDS"); do
	start_servers "$round"
	order=(ferry coturn)
	((round % 2 == 0)) && order=(coturn ferry)
	for sc in "${SCENARIOS[@]}"; do
		for server in "${order[@]}"; do
			bench "$server" "$sc" "$round"
		done
	done
	stop_servers
done
printf '\nload:     %s (after, %ds)\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$((SECONDS - start))"

# ------------------------------------------------------------- summary

# median SCENARIO SERVER: the median of the rounds' metric.
median() {
	local f
	for f in "$OUT"/*-"$1"-"$2".json; do
		jq -r "${METRIC[$1]} // empty" "$f"
	done | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '%-68s %10s %10s %8s  %s\n' "median of $ROUNDS rounds" ferry coturn "f/c" "target"
for sc in "${SCENARIOS[@]}"; do
	f=$(median "$sc" ferry)
	c=$(median "$sc" coturn)
	read -r ratio verdict target < <(awk -v f="$f" -v c="$c" -v sc="$sc" 'BEGIN {
		if (f == "nan" || c == "nan") { print "n/a", "n/a", "-"; exit }
		r = (c != 0) ? f / c : 0
		if (sc == "cpu")    { ok = r <= 0.7;    t = "ferry/coturn<=0.7" }
		if (sc == "max")    { ok = r >= 1.3;    t = "ferry/coturn>=1.3" }
		if (sc == "allocs") { ok = r >= 2;      t = "ferry/coturn>=2" }
		if (sc == "rss")    { ok = f <= 8;      t = "ferry<=8KiB" }
		if (sc == "rtt")    { ok = f - c <= 50; t = "ferry-coturn<=50us"; printf "%+.0fus %s %s\n", f - c, ok ? "MET" : "MISSED", t; exit }
		printf "%.2f %s %s\n", r, ok ? "MET" : "MISSED", t }')
	printf '%-68s %10s %10s %8s  %s %s\n' "${TITLE[$sc]}" "$f" "$c" "$ratio" "$target" "$verdict"
done
