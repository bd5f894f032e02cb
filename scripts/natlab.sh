#!/usr/bin/env bash
# natlab.sh: a NAT lab in Linux network namespaces, for people and for the
# Go tests (internal/natlab runs this script, so both see one topology).
#
#   bash scripts/natlab.sh up [NAME]                 # build lab NAME (default: demo)
#   bash scripts/natlab.sh down [NAME]               # tear it down
#   bash scripts/natlab.sh describe [NAME]           # print the lab's description
#   bash scripts/natlab.sh exec NAME NODE CMD [ARG]  # run CMD in a node's namespace
#   bash scripts/natlab.sh list                      # labs that are up
#
# Needs root, iproute2, iptables and ipset. Everything lives in namespaces named
# flab-NAME-*; nothing is added to the calling namespace, so `down` (or
# deleting those namespaces) removes every interface, address and rule.
#
# Topology (documentation prefixes only, and only inside the namespaces):
#
#   inet      the "internet" router: bridge br0 with 203.0.113.254/24 and
#             198.51.100.254/24, forwarding between them
#   ferry     ferry's host: 203.0.113.1 (primary) and 203.0.113.2 (alt-ip)
#   r-KIND    a NAT router: public 198.51.100.(10+i) toward inet, private
#             192.0.2.(16i+1)/28 toward its client, iptables NAT of KIND
#   c-KIND    the client behind it: 192.0.2.(16i+2)/28
#
# NAT kinds (RFC 4787 mapping / filtering behaviour):
#
#   fullcone        endpoint-independent / endpoint-independent, hairpinning
#                   (SNAT keeping ports, inbound UDP DNAT to the client)
#   restricted      endpoint-independent / address-dependent
#                   (SNAT keeping ports, inbound UDP DNAT to the client, let
#                   through only from an address the client has sent to
#                   from that port: an ipset of remote IP and client port)
#   portrestricted  endpoint-independent / address-and-port-dependent
#                   (SNAT keeping ports; inbound only ESTABLISHED,RELATED)
#   symmetric       address-and-port-dependent / address-and-port-dependent
#                   (MASQUERADE --random-fully; inbound only ESTABLISHED,RELATED)
#   symmetric2      a second symmetric NAT, for two clients that cannot
#                   reach each other directly
#
# A ferry for the lab (relaying to the lab's documentation prefixes, which
# ferry refuses by default, must be allowed explicitly):
#
#   bash scripts/natlab.sh exec demo ferry ferry serve \
#     --listen udp://203.0.113.1:3478 --alt-ip 203.0.113.2 --relay-ip 203.0.113.1 \
#     --allowed-peers 198.51.100.0/24 --allowed-peers 192.0.2.0/24 \
#     --allowed-peers 203.0.113.0/24 --user alice=secret
#   bash scripts/natlab.sh exec demo c-symmetric ferry probe stun://203.0.113.1:3478
set -Eeuo pipefail

KINDS=(fullcone portrestricted symmetric symmetric2 restricted)
FERRY_IP=203.0.113.1
FERRY_ALT_IP=203.0.113.2

die() { printf 'natlab: %s\n' "$*" >&2; exit 1; }

check_name() {
	[[ $1 =~ ^[a-z0-9]{1,16}$ ]] || die "lab name '$1' must be 1-16 characters a-z, 0-9"
}

# nat_index KIND: the 1-based index of KIND.
nat_index() {
	local i
	for i in "${!KINDS[@]}"; do
		[[ ${KINDS[$i]} == "$1" ]] && { echo $((i + 1)); return; }
	done
	die "unknown NAT kind $1"
}

public_ip() { echo "198.51.100.$((10 + $1))"; }
router_private_ip() { echo "192.0.2.$((16 * $1 + 1))"; }
client_ip() { echo "192.0.2.$((16 * $1 + 2))"; }

# expected KIND: "mapping filtering hairpinning" as ferry probe names them.
expected() {
	case $1 in
	fullcone) echo "endpoint-independent endpoint-independent yes" ;;
	restricted) echo "endpoint-independent address-dependent no" ;;
	portrestricted) echo "endpoint-independent address-and-port-dependent no" ;;
	symmetric | symmetric2) echo "address-and-port-dependent address-and-port-dependent no" ;;
	*) die "unknown NAT kind $1" ;;
	esac
}

describe() {
	local name=$1 p="flab-$1" kind i exp
	echo "lab name=$name prefix=$p"
	echo "ferry ns=$p-ferry ip=$FERRY_IP alt_ip=$FERRY_ALT_IP"
	for kind in "${KINDS[@]}"; do
		i=$(nat_index "$kind")
		read -r -a exp <<<"$(expected "$kind")"
		echo "nat kind=$kind router=$p-r-$kind client=$p-c-$kind public=$(public_ip "$i") client_ip=$(client_ip "$i") mapping=${exp[0]} filtering=${exp[1]} hairpinning=${exp[2]}"
	done
}

# lab_namespaces NAME: the namespaces of lab NAME that exist.
lab_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^flab-$1-" || true
}

down() {
	local ns
	for ns in $(lab_namespaces "$1"); do
		ip netns del "$ns" 2>/dev/null || true
	done
}

in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

forwarding() { in_ns "$1" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'; }

# add_ns NS: a namespace with lo up.
add_ns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
}

# attach NS VETH: NS's eth0 joins inet's bridge through VETH.
attach() {
	ip -n "$P-inet" link add name "$2" type veth peer name eth0 netns "$1"
	ip -n "$P-inet" link set "$2" master br0 up
	ip -n "$1" link set eth0 up
}

nat_rules() {
	local kind=$1 r=$2 pub=$3 cli=$4
	local ipt=(ip netns exec "$r" iptables -w)
	"${ipt[@]}" -P FORWARD DROP
	if [[ $kind == restricted ]]; then
		# Remember (remote IP, client port) for every datagram out: the
		# filter of an address-dependent NAT, per mapping.
		ip netns exec "$r" ipset create talked hash:ip,port timeout 300
		"${ipt[@]}" -A FORWARD -i eth1 -o eth0 -p udp -j SET --add-set talked dst,src --exist
	fi
	"${ipt[@]}" -A FORWARD -i eth1 -o eth0 -j ACCEPT
	"${ipt[@]}" -A FORWARD -i eth0 -o eth1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	# Filtered datagrams vanish, as on most NATs (no ICMP port unreachable).
	"${ipt[@]}" -A INPUT -i eth0 -p udp -j DROP
	case $kind in
	fullcone)
		"${ipt[@]}" -t nat -A POSTROUTING -o eth0 -j SNAT --to-source "$pub"
		"${ipt[@]}" -t nat -A PREROUTING -i eth0 -p udp -j DNAT --to-destination "$cli"
		"${ipt[@]}" -A FORWARD -i eth0 -o eth1 -m conntrack --ctstate DNAT -j ACCEPT
		# Hairpinning: the client reaching its own public address.
		"${ipt[@]}" -t nat -A PREROUTING -i eth1 -d "$pub" -p udp -j DNAT --to-destination "$cli"
		"${ipt[@]}" -t nat -A POSTROUTING -o eth1 -s "$cli" -d "$cli" -p udp -j SNAT --to-source "$pub"
		"${ipt[@]}" -A FORWARD -i eth1 -o eth1 -j ACCEPT
		;;
	restricted)
		"${ipt[@]}" -t nat -A POSTROUTING -o eth0 -j SNAT --to-source "$pub"
		"${ipt[@]}" -t nat -A PREROUTING -i eth0 -p udp -j DNAT --to-destination "$cli"
		"${ipt[@]}" -A FORWARD -i eth0 -o eth1 -m conntrack --ctstate DNAT \
			-m set --match-set talked src,dst -j ACCEPT
		;;
	portrestricted)
		"${ipt[@]}" -t nat -A POSTROUTING -o eth0 -j SNAT --to-source "$pub"
		;;
	symmetric | symmetric2)
		"${ipt[@]}" -t nat -A POSTROUTING -o eth0 -j MASQUERADE --random-fully
		;;
	esac
}

# up_failed NAME: the ERR trap of up: tear the partial lab down.
up_failed() {
	local rc=$?
	echo "natlab: building lab $1 failed; tearing it down" >&2
	down "$1"
	exit "$rc"
}

up() {
	local name=$1 kind i r c pub
	P="flab-$name"
	[[ -z "$(lab_namespaces "$name")" ]] || die "lab $name is already up; run: $0 down $name"
	command -v iptables >/dev/null || die "iptables not found (apt-get install iptables)"
	command -v ipset >/dev/null || die "ipset not found (apt-get install ipset)"
	trap 'up_failed "$name"' ERR

	add_ns "$P-inet"
	ip -n "$P-inet" link add br0 type bridge
	ip -n "$P-inet" link set br0 up
	ip -n "$P-inet" addr add 203.0.113.254/24 dev br0
	ip -n "$P-inet" addr add 198.51.100.254/24 dev br0
	forwarding "$P-inet"

	add_ns "$P-ferry"
	attach "$P-ferry" lnk-ferry
	ip -n "$P-ferry" addr add "$FERRY_IP/24" dev eth0
	ip -n "$P-ferry" addr add "$FERRY_ALT_IP/24" dev eth0
	ip -n "$P-ferry" route add default via 203.0.113.254

	for kind in "${KINDS[@]}"; do
		i=$(nat_index "$kind")
		r="$P-r-$kind" c="$P-c-$kind" pub=$(public_ip "$i")
		add_ns "$r"
		attach "$r" "lnk-$i"
		ip -n "$r" addr add "$pub/24" dev eth0
		ip -n "$r" route add default via 198.51.100.254
		add_ns "$c"
		ip -n "$r" link add name eth1 type veth peer name eth0 netns "$c"
		ip -n "$r" addr add "$(router_private_ip "$i")/28" dev eth1
		ip -n "$r" link set eth1 up
		ip -n "$c" addr add "$(client_ip "$i")/28" dev eth0
		ip -n "$c" link set eth0 up
		ip -n "$c" route add default via "$(router_private_ip "$i")"
		forwarding "$r"
		nat_rules "$kind" "$r" "$pub" "$(client_ip "$i")"
	done
	trap - ERR
	describe "$name"
}

cmd=${1:-}
shift || true
case $cmd in
up | down | describe)
	name=${1:-demo}
	check_name "$name"
	[[ $cmd == describe ]] || [[ $EUID -eq 0 ]] || die "needs root (network namespaces)"
	"$cmd" "$name"
	;;
exec)
	(($# >= 3)) || die "usage: $0 exec NAME NODE CMD [ARG...]"
	check_name "$1"
	ns="flab-$1-$2"
	shift 2
	exec ip netns exec "$ns" "$@"
	;;
list)
	ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^flab-([a-z0-9]+)-inet$/\1/p'
	;;
*)
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
