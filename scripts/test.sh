#!/usr/bin/env bash
# The whole test suite: run as root on a fresh Debian machine with
#
#   bash scripts/test.sh
#
# Steps: install test dependencies, gofmt check, go vet, staticcheck,
# go test -race, and a bounded fuzz smoke over every Fuzz target. Every step
# runs even when an earlier one failed; a summary follows and the exit status
# is non-zero when any step failed. CI is passed through unchanged (with
# CI=true, tests fail instead of skipping when a tool is missing).
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

summary=()
failed=0
suite_start=$SECONDS

# step NAME CMD...: runs CMD, records its status and duration.
step() {
	local name=$1
	shift
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
step fuzz fuzz_smoke

printf '\n==== summary (%ds total)\n' "$((SECONDS - suite_start))"
printf '%s\n' "${summary[@]}"
if ((failed)); then
	echo "RESULT: FAIL"
	exit 1
fi
echo "RESULT: PASS"
