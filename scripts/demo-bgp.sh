#!/usr/bin/env bash
# make demo-bgp: two xlb nodes behind a router. A router namespace runs BIRD 2
# with ECMP (L4 hash); two balancer namespaces, lb1 and lb2, each run their own
# xlbd with the same config and announce the VIP by BGP; three backends
# (weights 1:1:2) answer the client directly through the router (IPIP, DSR).
# A client behind the router opens 50 new connections a second. The screen
# shows the router's next hops, each node's share of the packets and which
# backend answered. At 12 s lb2 dies (link cut, xlbd -9, XDP detached): the
# router withdraws it after the 3 s hold time and its traffic moves to lb1,
# to the same backends. At 30 s lb2 comes back and announces again.
# DEMO_SECONDS=N stops by itself after N seconds (for tests). Ctrl-C cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "demo-bgp: run as root (it creates network namespaces and attaches XDP)" >&2
	exit 1
fi
for cmd in bird birdc bridge; do
	command -v $cmd >/dev/null || { echo "demo-bgp: $cmd not found: make deps installs bird2" >&2; exit 1; }
done

# XLB_DEMO_PREFIX and XLB_DEMO_DIR name its namespaces and files (tests give
# each run its own, so that two runs on one machine do not collide).
P=${XLB_DEMO_PREFIX:-xlbbgp}
DIR=${XLB_DEMO_DIR:-/run/xlb-demo-bgp}
BIN=$PWD/bin
VIP=10.0.0.100
pids=()
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	set +e
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	[ -f "$DIR/bird.pid" ] && kill "$(cat "$DIR/bird.pid")" 2>/dev/null
	wait 2>/dev/null
	for n in lb1 lb2; do
		[ -x "$BIN/xlbd" ] && [ -f "$DIR/$n.yaml" ] && "$BIN/xlbd" -detach -config "$DIR/$n.yaml" >/dev/null 2>&1
		mountpoint -q "$DIR/bpf-$n" && umount "$DIR/bpf-$n"
	done
	for ns in client router lb1 lb2 b1 b2 b3 br; do ip netns del $P-$ns 2>/dev/null; done
	rm -rf "$DIR"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT
cleanup # leftovers of an interrupted run

say "building xlbd, xlbctl and the demo client/backends"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/xlbd ./cmd/xlbctl
go build -o "$BIN/xlb-demo" ./test/demo

say "creating namespaces: client — router (BIRD) — bridge — lb1, lb2, b1, b2, b3"
mkdir -p "$DIR"
ip netns add $P-br
ip -n $P-br link add br0 type bridge stp_state 0 forward_delay 0
ip -n $P-br link set br0 up
host() { # name ipv4: a namespace on the bridge
	ip netns add $P-$1
	ip -n $P-$1 link set lo up
	ip -n $P-$1 link add eth0 type veth peer name p-$1 netns $P-br
	ip -n $P-br link set p-$1 master br0 up
	ip -n $P-$1 addr add "$2/24" dev eth0
	ip -n $P-$1 link set eth0 up
	ip netns exec $P-$1 sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.lo.rp_filter=0
}
host router 10.0.0.254
ip netns add $P-client
ip -n $P-client link set lo up
ip -n $P-client link add eth0 type veth peer name eth1 netns $P-router
ip -n $P-client addr add 10.1.0.1/24 dev eth0
ip -n $P-client link set eth0 up
ip -n $P-router addr add 10.1.0.254/24 dev eth1
ip -n $P-router link set eth1 up
ip -n $P-client route add default via 10.1.0.254
# Checksums in the packets, as from a real NIC, not left to veth offload.
ip netns exec $P-client ethtool -K eth0 tx off >/dev/null
ip netns exec $P-router ethtool -K eth0 tx off >/dev/null
# The router hashes the 5-tuple read from each packet (policy 3, fields
# 0x37); policy 1 would follow the sender's socket hash, which TCP re-picks
# on every retransmission timeout.
ip netns exec $P-router sysctl -qw net.ipv4.conf.all.forwarding=1 \
	net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x37
i=0
for b in b1 b2 b3; do
	i=$((i + 1))
	host $b 10.0.0.1$i
	ip -n $P-$b addr add $VIP/32 dev lo
	ip -n $P-$b route add default via 10.0.0.254
	ip netns exec $P-$b sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	ip netns exec $P-$b "$BIN/xlbd" decap -interface eth0 -allow 10.0.0.2/32,10.0.0.3/32 >/dev/null
	# Health on the VIP too, for checks that travel the forwarding path.
	ip netns exec $P-$b "$BIN/xlb-demo" backend -name "$b" -listen "$VIP:80,10.0.0.1$i:8080,$VIP:8080" &
	pids+=($!)
done

node_config() { # name
	cat <<YAML
admin:
  listen: 127.0.0.1:9100
xdp:
  interfaces: [eth0]
  mode: generic
  pin_path: $DIR/bpf-$1/xlb
services:
  - name: demo
    layer: 4
    vip: $VIP
    port: 80
    forwarding: ipip
    backends:
      - {address: 10.0.0.11, weight: 1}
      - {address: 10.0.0.12, weight: 1}
      - {address: 10.0.0.13, weight: 2}
    health_check: {type: http, port: 8080, path: /health, interval: 1s, timeout: 500ms}
bgp:
  asn: 65001
  graceful_restart: {enabled: true, restart_time: 60s}
  peers:
    - {address: 10.0.0.254, asn: 65000, hold_time: 3s}
YAML
}
n=1
for lb in lb1 lb2; do
	n=$((n + 1))
	host $lb 10.0.0.$n
	ip netns exec $P-$lb ethtool -K eth0 tx off >/dev/null
	# A bridge floods frames for a MAC it forgot to every port, and XDP on
	# the other balancer would take them: no flooding to the balancers.
	ip netns exec $P-br bridge link set dev p-$lb flood off
	# Pins on a bpffs in the root mount namespace: one mounted inside `ip
	# netns exec` would vanish with xlbd, and take the XDP program with it.
	mkdir -p "$DIR/bpf-$lb"
	mount -t bpf bpf "$DIR/bpf-$lb"
	node_config $lb >"$DIR/$lb.yaml"
done

cat >"$DIR/bird.conf" <<BIRD
log "$DIR/bird.log" { info, remote, warning, error, auth, fatal, bug };
router id 10.0.0.254;
protocol device { scan time 1; }
protocol kernel {
	ipv4 { import none; export all; };
	merge paths on;     # equal BGP routes become one ECMP route
}
template bgp xlb {
	local 10.0.0.254 as 65000;
	passive on;
	hold time 3;
	keepalive time 1;
	error wait time 1, 2;
	graceful restart on;
	ipv4 { import all; export none; };
}
protocol bgp lb1 from xlb { neighbor 10.0.0.2 as 65001; }
protocol bgp lb2 from xlb { neighbor 10.0.0.3 as 65001; }
BIRD
say "starting BIRD in the router (config $DIR/bird.conf)"
ip netns exec $P-router bird -c "$DIR/bird.conf" -s "$DIR/bird.ctl" -P "$DIR/bird.pid"

start_xlbd() { # node
	ip netns exec $P-$1 "$BIN/xlbd" -config "$DIR/$1.yaml" >>"$DIR/$1.log" 2>&1 &
	eval "pid_$1=$!"
	pids+=($!)
}
ctl() { local n=$1; shift; ip netns exec $P-$n "$BIN/xlbctl" "$@"; }
say "starting xlbd on lb1 and lb2 (logs $DIR/lb1.log, $DIR/lb2.log)"
start_xlbd lb1
start_xlbd lb2
for n in lb1 lb2; do
	for _ in $(seq 50); do ctl $n status >/dev/null 2>&1 && break; sleep 0.2; done
	ctl $n status >/dev/null || { cat "$DIR/$n.log"; exit 1; }
done
for _ in $(seq 50); do [ "$(ip -n $P-router route show $VIP | grep -c 'via 10.0.0')" -ge 2 ] && break; sleep 0.2; done

ip netns exec $P-client "$BIN/xlb-demo" client -url "http://$VIP/" -rate 50 >"$DIR/client.log" 2>&1 &
pids+=($!)

tx() { ctl "$1" stats 2>/dev/null | awk '$1 == "tx" { print $3 }'; }
declare -A last
start=$(date +%s)
limit=${DEMO_SECONDS:-0}
died=0 back=0
while :; do
	now=$(($(date +%s) - start))
	[ "$limit" -gt 0 ] && [ "$now" -ge "$limit" ] && break
	if [ $died -eq 0 ] && [ $now -ge 12 ]; then
		# A death, not a restart: the link goes first (a clean close with
		# graceful restart would make the router keep the route).
		ip -n $P-lb2 link set eth0 down
		kill -9 "$pid_lb2"
		"$BIN/xlbd" -detach -config "$DIR/lb2.yaml" >/dev/null
		died=1
		echo "$(date +%T) lb2 died (link cut, xlbd killed with -9, XDP detached)" >>"$DIR/events.log"
	fi
	if [ $back -eq 0 ] && [ $now -ge 30 ]; then
		ip -n $P-lb2 link set eth0 up
		start_xlbd lb2
		back=1
		echo "$(date +%T) lb2 back: a fresh xlbd announces once its checks pass" >>"$DIR/events.log"
	fi
	[ -t 1 ] && clear
	say "xlb BGP demo — VIP $VIP:80 on lb1 and lb2 behind an ECMP router — ${now}s, Ctrl-C to stop"
	say "router: route to $VIP (one next hop per node that announces it)"
	ip -n $P-router route show $VIP || true
	say "nodes: packets forwarded in the last second"
	for n in lb1 lb2; do
		cur=$(tx $n || true)
		if [ -n "$cur" ]; then
			printf '  %s  %6d packets/s  table %s\n' $n $((cur - ${last[$n]:-$cur})) \
				"$(ctl $n status 2>/dev/null | awk '/^TCP/ { for (i = 1; i < NF; i++) if ($i == "table") print $(i+1) }')"
			last[$n]=$cur
		else
			printf '  %s  down\n' $n
		fi
	done
	say "client: new connections per second, by the backend that answered"
	tail -n 6 "$DIR/client.log" 2>/dev/null || true
	[ -f "$DIR/events.log" ] && { say "events"; cat "$DIR/events.log"; }
	sleep 1
done
say "lb1: xlbctl bgp"
ctl lb1 bgp || true
say "router: birdc show protocols"
birdc -s "$DIR/bird.ctl" show protocols || true
