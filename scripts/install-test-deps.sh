#!/usr/bin/env bash
# Installs what scripts/test.sh needs on a fresh Debian (bookworm), as root.
#
#   bash scripts/install-test-deps.sh            # every group
#   bash scripts/install-test-deps.sh coturn     # only the named groups
#
# Idempotent and quick when everything is present: apt is only touched (and
# its index only refreshed) when a package is missing. Each group is one
# function named install_<group>; add new groups (chromium, npm, docker, ...)
# as functions and list them in ALL_GROUPS.
set -euo pipefail

# Pinned tool versions.
# staticcheck 2026.2.2 is module version v0.8.2 ("staticcheck -version"
# prints "staticcheck 2026.2.2 (0.8.2)").
STATICCHECK_MODULE_VERSION=v0.8.2

ALL_GROUPS=(build coturn netlab gotools)

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- helpers

apt_updated=0

# pkg_installed NAME: true when dpkg has NAME fully installed.
pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' ok installed$'
}

# apt_install PKG...: installs the packages that are missing, refreshing the
# apt index at most once per run. Services of newly installed packages are not
# started (a temporary policy-rc.d, unless the host already has one).
apt_install() {
	local missing=() p
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]} == 0)) && return 0
	[[ $EUID -eq 0 ]] || die "need root to install: ${missing[*]}"
	log "apt-get install ${missing[*]}"
	if ((apt_updated == 0)); then
		apt-get update -qq
		apt_updated=1
	fi
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
		--no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	((own_policy)) && rm -f "$policy"
	((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
}

# have_cmd NAME: true when NAME is on PATH.
have_cmd() { command -v "$1" >/dev/null 2>&1; }

# ensure_go: puts the Go toolchain and GOPATH/bin on PATH.
ensure_go() {
	if ! have_cmd go && [[ -x /usr/local/go/bin/go ]]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	have_cmd go || die "go not found (expected /usr/local/go/bin/go)"
	local gobin
	gobin="$(go env GOBIN)"
	[[ -n $gobin ]] || gobin="$(go env GOPATH)/bin"
	case ":$PATH:" in *":$gobin:"*) ;; *) export PATH="$gobin:$PATH" ;; esac
	GOBIN_DIR="$gobin"
}

# ---------------------------------------------------------------- groups

# build: a C toolchain for go test -race (cgo).
install_build() {
	apt_install gcc libc6-dev
}

# coturn: turnutils_uclient, turnutils_peer, turnutils_stunclient,
# turnutils_natdiscovery for test/interop. The package's own turnserver
# service must not run: it would hold port 3478 and answer in ferry's place.
install_coturn() {
	apt_install coturn
	# Disable the unit even when systemd is not running (offline disable
	# works on the unit files), so a later boot does not start it.
	if have_cmd systemctl && systemctl is-enabled --quiet coturn 2>/dev/null; then
		log "disabling coturn.service"
		systemctl disable --quiet coturn 2>/dev/null || true
	fi
	if have_cmd systemctl && [[ -d /run/systemd/system ]]; then
		if systemctl is-active --quiet coturn 2>/dev/null; then
			log "stopping coturn.service"
			systemctl stop coturn
		fi
	elif [[ -x /etc/init.d/coturn ]] && pgrep -x turnserver >/dev/null 2>&1; then
		log "stopping coturn (init.d)"
		/etc/init.d/coturn stop >/dev/null 2>&1 || true
	fi
	if pgrep -x turnserver >/dev/null 2>&1; then
		log "warning: a turnserver process is still running: $(pgrep -ax turnserver | head -3)"
	fi
	local t
	for t in turnutils_uclient turnutils_peer turnutils_stunclient turnutils_natdiscovery; do
		have_cmd "$t" || die "$t missing after installing coturn"
	done
}

# netlab: network namespaces and NAT rules for the NAT-lab tests.
install_netlab() {
	apt_install iproute2 iptables
}

# gotools: Go linters, pinned.
install_gotools() {
	ensure_go
	if [[ "$(staticcheck -version 2>/dev/null)" != *"(${STATICCHECK_MODULE_VERSION#v})"* ]]; then
		log "go install staticcheck@${STATICCHECK_MODULE_VERSION}"
		GOBIN="$GOBIN_DIR" \
			go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_MODULE_VERSION}"
	fi
}

# ---------------------------------------------------------------- main

main() {
	local groups=("$@") g
	((${#groups[@]})) || groups=("${ALL_GROUPS[@]}")
	for g in "${groups[@]}"; do
		declare -F "install_$g" >/dev/null || die "unknown group $g (have: ${ALL_GROUPS[*]})"
		"install_$g"
	done
}

main "$@"
