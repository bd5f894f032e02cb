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

ALL_GROUPS=(build coturn netlab bpf redis gotools browser docker)

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

# redis: redis-server for the cluster tests, which start their own on a
# free loopback port. The package's own service is not needed: stopped and
# disabled, so it holds no port.
install_redis() {
	apt_install redis-server
	if have_cmd systemctl && systemctl is-enabled --quiet redis-server 2>/dev/null; then
		log "disabling redis-server.service"
		systemctl disable --quiet redis-server 2>/dev/null || true
	fi
	if have_cmd systemctl && [[ -d /run/systemd/system ]]; then
		systemctl is-active --quiet redis-server 2>/dev/null && systemctl stop redis-server
	elif [[ -x /etc/init.d/redis-server ]] && pgrep -f '^/usr/bin/redis-server 127.0.0.1:6379' >/dev/null 2>&1; then
		log "stopping redis-server (init.d)"
		/etc/init.d/redis-server stop >/dev/null 2>&1 || true
	fi
	have_cmd redis-server || die "redis-server missing after installing the redis group"
}

# netlab: network namespaces and NAT rules for the NAT-lab tests.
install_netlab() {
	apt_install iproute2 iptables ipset
}

# bpf: the kernel fast path (offload/): clang and llvm (llvm-strip) with
# libbpf's headers to regenerate and check the committed BPF object (go
# generate ./offload/), ethtool for its namespace tests (TX checksum
# offload on and off), and bpftool to inspect loaded programs.
install_bpf() {
	apt_install clang llvm libbpf-dev ethtool iproute2
	if apt-cache show bpftool >/dev/null 2>&1; then
		apt_install bpftool
	fi
	local t
	for t in clang llvm-strip ethtool; do
		have_cmd "$t" || die "$t missing after installing the bpf group"
	done
	[[ -f /usr/include/bpf/bpf_helpers.h ]] || die "libbpf headers missing after installing libbpf-dev"
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

# browser: headless Chromium and Node.js for test/browser, and the npm
# packages of the browser tests (test/browser: playwright-core) and of the
# PeerJS example (examples/peerjs: peer, peerjs, express), installed with
# `npm ci` from their committed lockfiles. npm ci runs again only when a
# lockfile changed (a stamp in node_modules records the one installed).
install_browser() {
	apt_install chromium
	if ! have_cmd node || ! have_cmd npm; then
		apt_install nodejs npm
	fi
	local major
	major="$(node -p 'process.versions.node.split(".")[0]')"
	((major >= 20)) || die "node $(node --version) is too old for playwright-core; need 20 or later"
	local root dir sum stamp
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	for dir in test/browser examples/peerjs; do
		sum="$(sha256sum "$root/$dir/package-lock.json" | cut -d' ' -f1)"
		stamp="$root/$dir/node_modules/.ferry-lock-sha256"
		[[ -f $stamp && "$(cat "$stamp")" == "$sum" ]] && continue
		log "npm ci in $dir"
		(cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
			die "npm ci in $dir failed"
		printf '%s\n' "$sum" >"$stamp"
	done
	have_cmd chromium || die "chromium missing after installing it"
}

# docker: the Docker engine (docker.io) for test/docker, and a running
# dockerd. Where systemd runs, its docker.service is started; elsewhere
# (containers, CI) dockerd is started in the background, logging to
# /var/log/ferry-dockerd.log, and its socket awaited. If it cannot set up
# its default bridge (no iptables or bridge support), it is restarted
# without one: the tests use --network host only.
install_docker() {
	have_cmd dockerd || apt_install docker.io
	have_cmd docker || die "docker CLI missing after installing docker.io"
	docker_up && return 0
	if have_cmd systemctl && [[ -d /run/systemd/system ]]; then
		log "starting docker.service"
		systemctl start docker || true
		wait_docker 30 && return 0
	fi
	start_dockerd && return 0
	log "dockerd did not come up with its default bridge; retrying without bridge and iptables"
	start_dockerd --bridge=none --iptables=false --ip6tables=false ||
		die "dockerd did not start; see /var/log/ferry-dockerd.log"
}

# docker_up: true when the docker CLI reaches a daemon.
docker_up() { docker info >/dev/null 2>&1; }

# wait_docker SECONDS: waits for the daemon to answer.
wait_docker() {
	local i
	for ((i = 0; i < $1 * 4; i++)); do
		docker_up && return 0
		sleep 0.25
	done
	return 1
}

# start_dockerd ARGS...: starts dockerd in the background and waits for it;
# on failure stops the dockerd it started.
start_dockerd() {
	log "starting dockerd $* in the background (log: /var/log/ferry-dockerd.log)"
	nohup dockerd "$@" >>/var/log/ferry-dockerd.log 2>&1 </dev/null &
	local pid=$!
	wait_docker 60 && return 0
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 1
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
