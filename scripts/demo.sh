#!/usr/bin/env bash
# make demo: xlb on a built-in topology. Namespaces for a client, the balancer
# and three backends (weights 1:1:2) on one bridge; xlbd balances a VIP by
# IPIP; a client sends 50 new connections a second; the screen shows xlbctl
# status and which backend answered. After a while backend b2 is killed, and
# the traffic moves; later it comes back. Ctrl-C removes everything.
# DEMO_SECONDS=N stops by itself after N seconds (for tests).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (it creates network namespaces and attaches XDP)" >&2
	exit 1
fi

# XLB_DEMO_PREFIX and XLB_DEMO_DIR name its namespaces and files (tests give
# each run its own, so that two runs on one machine do not collide).
P=${XLB_DEMO_PREFIX:-xlbdemo}
DIR=${XLB_DEMO_DIR:-/run/xlb-demo}
BIN=$PWD/bin
VIP=10.0.0.100
pids=()
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	set +e
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	if [ -x "$BIN/xlbd" ] && [ -f "$DIR/xlb.yaml" ]; then
		ip netns exec $P-lb "$BIN/xlbd" -detach -config "$DIR/xlb.yaml" >/dev/null 2>&1
	fi
	for ns in client lb b1 b2 b3 br; do ip netns del $P-$ns 2>/dev/null; done
	mountpoint -q "$DIR/bpf" && umount "$DIR/bpf"
	rm -rf "$DIR"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT
cleanup # leftovers of an interrupted run

say "building xlbd, xlbctl and the demo client/backends"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/xlbd ./cmd/xlbctl
go build -o "$BIN/xlb-demo" ./test/demo

say "creating namespaces: client, lb, b1, b2, b3 on a bridge"
mkdir -p "$DIR/bpf"
# Pins live on a bpffs in the root mount namespace: one mounted inside
# `ip netns exec` would vanish with xlbd, and take the XDP program with it.
mount -t bpf bpf "$DIR/bpf"
ip netns add $P-br
ip -n $P-br link add br0 type bridge stp_state 0 forward_delay 0
ip -n $P-br link set br0 up
host() { # name ipv4
	ip netns add $P-$1
	ip -n $P-$1 link set lo up
	ip -n $P-$1 link add eth0 type veth peer name p-$1 netns $P-br
	ip -n $P-br link set p-$1 master br0 up
	ip -n $P-$1 addr add "$2/24" dev eth0
	ip -n $P-$1 link set eth0 up
	ip netns exec $P-$1 sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.lo.rp_filter=0
}
host client 10.0.0.1
host lb 10.0.0.2
# xlbd's health probes travel encapsulated (health_check.via: vip); a veth
# leaves checksums to an offload the backends' native XDP decap never does.
ip netns exec $P-lb ethtool -K eth0 tx off >/dev/null
ip -n $P-client route add $VIP/32 via 10.0.0.2
i=0
for b in b1 b2 b3; do
	i=$((i + 1))
	host $b 10.0.0.1$i
	ip -n $P-$b addr add $VIP/32 dev lo
	ip netns exec $P-$b sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	ip netns exec $P-$b "$BIN/xlbd" decap -interface eth0 -allow 10.0.0.2/32 >/dev/null 2>&1
done

start_backend() {
	ip netns exec $P-$1 "$BIN/xlb-demo" backend -name "$1" -listen "$VIP:80,$2:8080,$VIP:8080" &
	eval "pid_$1=$!"
	pids+=($!)
}
start_backend b1 10.0.0.11
start_backend b2 10.0.0.12
start_backend b3 10.0.0.13

cat >"$DIR/xlb.yaml" <<YAML
admin:
  listen: 127.0.0.1:9100
xdp:
  interfaces: [eth0]
  mode: generic
  pin_path: $DIR/bpf/xlb
services:
  - name: demo
    layer: 4
    vip: $VIP
    port: 80
    protocol: tcp
    scheduler: maglev
    forwarding: ipip
    backends:
      - {address: 10.0.0.11, weight: 1}
      - {address: 10.0.0.12, weight: 1}
      - {address: 10.0.0.13, weight: 2}
    health_check: {type: http, port: 8080, path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2}
YAML
say "starting xlbd (config $DIR/xlb.yaml, log $DIR/xlbd.log)"
ip netns exec $P-lb "$BIN/xlbd" -config "$DIR/xlb.yaml" >"$DIR/xlbd.log" 2>&1 &
pids+=($!)
ctl() { ip netns exec $P-lb "$BIN/xlbctl" "$@"; }
for _ in $(seq 50); do ctl status >/dev/null 2>&1 && break; sleep 0.2; done
ctl status >/dev/null || { cat "$DIR/xlbd.log"; exit 1; }

ip netns exec $P-client "$BIN/xlb-demo" client -url "http://$VIP/" -rate 50 >"$DIR/client.log" 2>&1 &
pids+=($!)

start=$(date +%s)
limit=${DEMO_SECONDS:-0}
killed=0 revived=0
while :; do
	now=$(($(date +%s) - start))
	[ "$limit" -gt 0 ] && [ "$now" -ge "$limit" ] && break
	if [ $killed -eq 0 ] && [ $now -ge 12 ]; then
		kill "$pid_b2"; killed=1
		echo "$(date +%T) killed backend b2" >>"$DIR/events.log"
	fi
	if [ $revived -eq 0 ] && [ $now -ge 30 ]; then
		start_backend b2 10.0.0.12; revived=1
		echo "$(date +%T) restarted backend b2" >>"$DIR/events.log"
	fi
	[ -t 1 ] && clear
	say "xlb demo — VIP $VIP:80 balanced by XDP (IPIP) over b1, b2, b3 with weights 1:1:2 — ${now}s, Ctrl-C to stop"
	ctl status || true
	say "client: new connections per second, by the backend that answered"
	tail -n 6 "$DIR/client.log" 2>/dev/null || true
	[ -f "$DIR/events.log" ] && { say "events"; cat "$DIR/events.log"; }
	sleep 1
done
say "final data-plane counters"
ctl stats || true
