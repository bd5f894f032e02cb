#!/usr/bin/env bash
# The whole test suite: run as root on a fresh Debian machine with
#
#   bash scripts/test.sh
#
# Steps: install test dependencies, gofmt check, go vet, staticcheck,
# go test -race, the offload pass of the end-to-end tests (offload-e2e, see
# offload_e2e below), and a bounded fuzz smoke over every Fuzz target. Every
# step runs even when an earlier one failed; a summary follows and the exit
# status is non-zero when any step failed. CI is passed through unchanged
# (with CI=true, tests fail instead of skipping when a tool is missing).
#
# Arguments, if any, name the steps to run (default: all of them), e.g.
#
#   bash scripts/test.sh offload-e2e
#
# Knobs (environment): FUZZ_TIME per target (default 10s), FUZZ_BUDGET total
# seconds for all fuzz targets (default 180; per-target time shrinks to fit,
# never below 3s).
set -uo pipefail

cd "$(dirname "$0")/.." || exit
export CI

FUZZ_TIME="${FUZZ_TIME:-10s}"
FUZZ_BUDGET="${FUZZ_BUDGET:-180}"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

STEPS=(deps gofmt vet staticcheck test offload-e2e fuzz)
for arg in "$@"; do
	if [[ " ${STEPS[*]} " != *" $arg "* ]]; then
		echo "test.sh: unknown step $arg (steps: ${STEPS[*]})" >&2
		exit 2
	fi
done
only=("$@")

summary=()
failed=0
suite_start=$SECONDS

# step NAME CMD...: runs CMD, records its status and duration; skipped when
# steps were named and NAME is not one of them.
step() {
	local name=$1
	shift
	if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then
		return 0
	fi
	printf '\n==> %s\n' "$name"
	local start=$SECONDS rc=0
	"$@" || rc=$?
	local took=$((SECONDS - start)) status=ok
	if ((rc != 0)); then
		status="FAIL (exit $rc)"
		failed=1
	fi
	printf '<== %s: %s in %ds\n' "$name" "$status" "$took"
	summary+=("$(printf '%-14s %-16s %4ds' "$name" "$status" "$took")")
}

deps() {
	bash scripts/install-test-deps.sh || return
	# install-test-deps may have installed Go tools into GOBIN.
	local gobin
	gobin="$(go env GOBIN)"
	[[ -n $gobin ]] || gobin="$(go env GOPATH)/bin"
	case ":$PATH:" in *":$gobin:"*) ;; *) export PATH="$gobin:$PATH" ;; esac
}

gofmt_check() {
	local out
	out="$(gofmt -l .)" || return
	if [[ -n $out ]]; then
		echo "gofmt: these files are not formatted (run gofmt -w):"
		printf '  %s\n' "${out//$'\n'/$'\n'  }"
		return 1
	fi
}

go_test() {
	go test -race -count=1 -timeout 20m ./...
}

# The tests the offload pass runs: those that relay channel-bound UDP through
# ferry (coturn's turnutils_uclient, Chromium's TURN client), which the
# kernel fast path carries; TCP and TLS ones are unaffected by it.
OFFLOAD_E2E_TESTS='^(TestUClientRelay|TestUClientRESTCredentials|TestRelayDataChannel|TestPeerJSExample)$'
offload_ns=
offload_log=

# offload_e2e: runs OFFLOAD_E2E_TESTS of test/interop and test/browser again
# inside a network namespace of its own (lo up: 127.0.0.1 and ::1) with
# FERRY_TEST_OFFLOAD=lo, so every ferry they start attaches its kernel fast
# path to that lo with TC, fails unless it did, and the relay tests prove
# from ferry's metrics that the kernel relayed their packets. The fast path
# is never attached in the host's namespace (testutil.OffloadArgs refuses).
# Needs root and ip(8): without them it is skipped, or fails with CI=true.
#
# The namespace also holds a veth pair (both ends inside it, 192.0.2.1/24 on
# one, no routes out): with loopback alone Chromium finds no network and
# gathers no candidates at all. All traffic stays on 127.0.0.1.
#
# Tests may run in parallel: each ferry's program relays its own channels
# and leaves the rest to the next program on lo (offload
# TestTwoOnOneInterface).
offload_e2e() {
	local why=
	if ((EUID != 0)); then
		why="needs root (network namespaces, BPF)"
	elif ! command -v ip >/dev/null 2>&1; then
		why="needs ip(8) (iproute2; scripts/install-test-deps.sh netlab)"
	fi
	if [[ -n $why ]]; then
		if [[ ${CI:-} == true ]]; then
			echo "offload-e2e: CI=true: $why"
			return 1
		fi
		echo "offload-e2e: skipped: $why"
		return 0
	fi
	# Namespaces of earlier runs that were killed before deleting theirs.
	local ns
	for ns in $(ip netns list | awk '/^ferry-e2e-[0-9]+( |$)/ { print $1 }'); do
		[[ -d /proc/${ns#ferry-e2e-} ]] || ip netns del "$ns"
	done
	offload_ns="ferry-e2e-$$"
	ip netns add "$offload_ns" || return
	offload_log="$(mktemp)"
	trap offload_cleanup EXIT
	trap 'exit 130' INT TERM
	local rc=0
	ip -n "$offload_ns" link set lo up &&
		ip -n "$offload_ns" link add e2e0 type veth peer name e2e1 &&
		ip -n "$offload_ns" addr add 192.0.2.1/24 dev e2e0 &&
		ip -n "$offload_ns" link set e2e0 up &&
		ip -n "$offload_ns" link set e2e1 up || rc=$?
	if ((rc == 0)); then
		ip netns exec "$offload_ns" env FERRY_TEST_OFFLOAD=lo \
			go test -race -count=1 -timeout 10m -v -run "$OFFLOAD_E2E_TESTS" \
			./test/interop ./test/browser >"$offload_log" 2>&1 || rc=$?
		# The results and the fast path's counts; everything on failure.
		grep -E '^(=== RUN|--- |ok |FAIL|PASS|panic:)|^ +--- |kernel fast path: ' "$offload_log"
		if ((rc != 0)); then
			echo "offload-e2e: go test failed (exit $rc); its whole output:"
			cat "$offload_log"
		fi
	fi
	offload_cleanup
	trap - EXIT INT TERM
	return $rc
}

# offload_cleanup: deletes the offload pass's namespace and log, if any.
offload_cleanup() {
	if [[ -n $offload_ns ]]; then
		ip netns del "$offload_ns" 2>/dev/null
		offload_ns=
	fi
	if [[ -n $offload_log ]]; then
		rm -f "$offload_log"
		offload_log=
	fi
}

# fuzz_targets: prints "package FuzzName" for every fuzz target.
fuzz_targets() {
	go test -run='^$' -list '^Fuzz' ./... | awk '
		/^Fuzz/ { names[n++] = $1; next }
		/^(ok|FAIL|\?)/ {
			if ($1 == "FAIL") { bad = 1 }
			for (i = 0; i < n; i++) print $2, names[i]
			n = 0
		}
		END { exit bad }'
}

fuzz_smoke() {
	local list rc=0
	list="$(fuzz_targets)" || { echo "fuzz: listing targets failed in some package"; rc=1; }
	if [[ -z $list ]]; then
		echo "fuzz: no fuzz targets found"
		return $rc
	fi
	local count per
	count=$(wc -l <<<"$list")
	per=${FUZZ_TIME%s}
	if ((count * per > FUZZ_BUDGET)); then
		per=$((FUZZ_BUDGET / count))
		((per < 3)) && per=3
	fi
	echo "fuzz: $count targets, ${per}s each"
	local pkg name failures=()
	while read -r pkg name; do
		echo "--- fuzz $pkg $name"
		if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="${per}s" "$pkg"; then
			failures+=("$pkg $name")
		fi
	done <<<"$list"
	if ((${#failures[@]})); then
		echo "fuzz: failing targets (an input that crashed is saved under the package's testdata/fuzz/):"
		printf '  %s\n' "${failures[@]}"
		return 1
	fi
	return $rc
}

step deps deps
step gofmt gofmt_check
step vet go vet ./...
step staticcheck staticcheck ./...
step test go_test
step offload-e2e offload_e2e
step fuzz fuzz_smoke

printf '\n==== summary (%ds total)\n' "$((SECONDS - suite_start))"
printf '%s\n' "${summary[@]}"
if ((failed)); then
	echo "RESULT: FAIL"
	exit 1
fi
echo "RESULT: PASS"
