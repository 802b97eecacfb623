#!/usr/bin/env bash
# bench-l7.sh (`make bench-l7`): xlb's L7 tier against NGINX and HAProxy, all
# three in front of the same three local backends, measured in one run,
# taking turns, and reported as ratios to NGINX.
#
# Scenarios (SCENARIOS, default "http https https-new"; each prints its own table):
#   http       plain HTTP/1.1 keep-alive: `wrk -t THREADS -c CONNS`, and wrk
#              straight against one backend as the ceiling of the machine.
#   https      HTTP/1.1 keep-alive over TLS 1.3: the same wrk run against each
#              proxy's TLS port; CONNS handshakes per run, then requests: the
#              cost of TLS records on a busy connection.
#   h2         HTTP/2 over TLS 1.3 (ALPN h2): `h2load -t THREADS -c H2_CONNS -m
#              H2_STREAMS -D DURATION` (16 connections x 8 concurrent streams by
#              default), against nginx (`listen ... ssl http2`, port 18581),
#              haproxy (`bind ... alpn h2`, port 18582) and xlb's TLS service
#              (ALPN h2, its own HTTP/2 engine); backends stay HTTP/1.1
#              keep-alive. h2load's summary has no percentiles: p50 and p99
#              are computed from its per-request log (--log-file).
#   grpc       gRPC unary calls (grpc.health.v1.Health/Check) in cleartext HTTP/2:
#              test/benchl7/grpcload -c H2_CONNS -m H2_STREAMS, to three gRPC
#              backends (grpcload -serve, 127.0.0.1:19011-19013) through nginx
#              (`listen ... http2`, grpc_pass over a keepalive upstream, port
#              18681), haproxy (`bind ... proto h2`, servers `proto h2`, 18682)
#              and xlb (backend_protocol h2c, 18683).
#   https-new  a new TLS connection per request, a full handshake each (the
#              handshakes/s an edge can take): test/benchl7/tlsnew with CONNS
#              connections at a time (GOMAXPROCS=THREADS), each dial, TLS 1.3
#              handshake, one GET with "Connection: close", close. Not wrk:
#              with -H 'Connection: close' wrk reconnects but resumes the TLS
#              session. tlsnew keeps no session cache, so no handshake can
#              resume (the servers still issue tickets, as their defaults do);
#              it counts full and resumed handshakes, and the kernel's count
#              of accepted TCP connections is printed beside them.
# TLS is the same for all three proxies: one certificate and key made per run
# with openssl (ECDSA P-256, self-signed, SAN DNS:bench.xlb.test and
# IP:127.0.0.1; clients do not verify it), TLS 1.3 only on nginx and haproxy
# (xlb accepts 1.2 too until it has tls.min_version: see XLB_TLS_EXTRA; every
# client here offers 1.3), HTTP/1.1 only (ALPN http/1.1 where the client
# offers ALPN; wrk offers none), key exchange X25519 (what wrk's OpenSSL 3.0
# offers first; tlsnew offers only X25519), and TLS_AES_128_GCM_SHA256 first
# on nginx and haproxy with server preference, because that is the suite Go
# (xlb) picks (OpenSSL would pick AES-256-GCM), so that all three encrypt the
# same way. nginx: `listen ... ssl`, ssl_protocols TLSv1.3, session tickets
# and cache at nginx's defaults; haproxy: `bind ... ssl crt ... ssl-min-ver
# TLSv1.3 alpn http/1.1`, its default cache; xlb: a second layer 7 service
# with tls {cert_file, key_file} (Go's defaults: tickets on, keys rotated).
# Backends stay plain HTTP/1.1 keep-alive for every scenario. Before anything
# is timed, each TLS port is checked with openssl s_client (as wrk does the
# handshake) and, for https-new, with tlsnew -check; the negotiated version,
# suite, group, ALPN and certificate fingerprint are printed.
#
# What it does:
#   - installs what is missing (nginx, haproxy, wrk, curl, procps, and openssl
#     when a TLS scenario is selected) with apt-get,
#     as root only, without starting any system service (no systemd unit is
#     used; services the packages would start are denied by a policy-rc.d for
#     the duration of the install, if the machine has none);
#   - builds bin/xlbd, the backend (test/benchl7/backend) and, for https-new,
#     test/benchl7/tlsnew; starts the backends on 127.0.0.1:19001-19003
#     (GET / answers 64 bytes, GET /health 200);
#   - writes equivalent configs into a temp dir and runs each proxy as a
#     foreground process of its own on high ports: nginx 127.0.0.1:18081
#     (TLS 18481), haproxy 127.0.0.1:18082 (TLS 18482), xlbd 127.0.0.1:18083
#     (TLS 18483; admin/metrics 127.0.0.1:19100); the TLS listeners exist only
#     when a TLS scenario is selected, so SCENARIOS=http runs the configs of
#     before the TLS scenarios.
#     Equivalent means: round robin over the same three backends, HTTP/1.1
#     keep-alive to the backends, no request limit per connection, no access
#     log anywhere (xlbd runs without -access-log), a status/metrics endpoint on each
#     (xlb /metrics, nginx stub_status, haproxy Prometheus exporter), health
#     checking on each (xlb and haproxy: active GET /health every 1s, down after
#     3 failures, up after 2; nginx open source has passive checks only:
#     max_fails=3 fail_timeout=30s, which xlb also has as passive_health);
#   - warms up, then runs ROUNDS rounds; in each round every selected scenario
#     has its turn, and in it every target one `wrk -t THREADS -c CONNS -d
#     DURATION --latency` run (tlsnew for https-new); the order of the
#     targets turns by one each round (round 1: backend, nginx, haproxy, xlb;
#     round 2: nginx, haproxy, xlb, backend; ...) so that no proxy always
#     follows the same one;
#   - reads each proxy's CPU time (utime + stime of its whole process tree from
#     /proc/PID/stat, all threads included) before and after each run: CPU
#     microseconds per request is the steadiest figure on a small shared machine;
#   - reads the backends' /stats before and after each run: the share each
#     backend got (round robin: about a third each) and how many new upstream
#     connections the proxy opened (keep-alive: a handful, not one per request);
#     in the TLS scenarios also the kernel's PassiveOpens (/proc/net/snmp)
#     minus those upstream connections: the client connections the proxy
#     accepted (all of the machine's loopback, so other local traffic adds
#     to it): about CONNS for https, about one per request for https-new;
#   - prints, per scenario, the median of the rounds per proxy (req/s, p50,
#     p99, CPU us/req), the ratios to NGINX, and for http wrk straight against
#     one backend as the ceiling.
#
# The figures are relative. Everything runs on one machine (2 cores here):
# the load client, the proxy and the backends share the CPUs, so requests/s
# is bounded by the whole set, and loopback delivery is partly charged to
# whoever sends. In https-new the client does a full handshake per request
# too, so it takes a large share of the CPUs.
# Compare ratios taken in the same run, not absolute numbers across machines.
# Run it in the foreground on an otherwise quiet machine.
#
# If xlbd cannot be built or does not start, the script prints "xlb:
# unavailable: <reason>", still measures nginx and haproxy, and exits 0. It
# exits non-zero if the harness itself cannot run (a port in use, a proxy
# that does not start, a config xlbd -check rejects).
#
# Environment: H2_CONNS (16), H2_STREAMS (8) for h2;
# SCENARIOS ("http https https-new", or h2 too, any subset, run in that
# order in each round), ROUNDS (3), DURATION (10s), CONNS (64), THREADS (2), WARMUP (2s),
# WORKERS (auto: each proxy's own default, one worker/thread per CPU; a
# number N runs every proxy on N: nginx worker_processes N, haproxy nbthread
# N, xlbd GOMAXPROCS=N),
# GO (go), XLBD (a prebuilt xlbd to use instead of building bin/xlbd),
# XLB_TLS_EXTRA (more keys for the xlb service's tls mapping, e.g.
# XLB_TLS_EXTRA='min_version: "1.3"' once xlb has that key; empty by default),
# KEEP_TMP=1 keeps the temp dir with the configs, logs and wrk output (it is
# kept anyway when the harness fails; an interrupted run removes it).
# Ctrl-C stops everything this script started.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
WORKERS=${WORKERS:-auto}
GO=${GO:-go}
SCENARIOS=${SCENARIOS:-http https https-new}
XLB_TLS_EXTRA=${XLB_TLS_EXTRA:-}

BACKEND_PORTS=(19001 19002 19003)
NGINX_PORT=18081
HAPROXY_PORT=18082
XLB_PORT=18083
XLB_ADMIN_PORT=19100
NGINX_STATUS_PORT=18091
HAPROXY_STATUS_PORT=18092
NGINX_TLS_PORT=18481
NGINX_H2_PORT=18581
GRPC_BACKEND_PORTS=(19011 19012 19013)
NGINX_GRPC_PORT=18681
HAPROXY_GRPC_PORT=18682
XLB_GRPC_PORT=18683
HAPROXY_H2_PORT=18582
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-8}
HAPROXY_TLS_PORT=18482
XLB_TLS_PORT=18483
TLS_NAME=bench.xlb.test # the certificate's name and the SNI tlsnew and openssl s_client send

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

log() { printf 'bench-l7: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ && $THREADS =~ ^[1-9][0-9]*$ ]] || die "CONNS and THREADS must be positive integers"
((CONNS >= THREADS)) || die "CONNS ($CONNS) must be at least THREADS ($THREADS)"
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ && $WARMUP =~ ^[0-9]+[smh]?$ ]] || die "DURATION/WARMUP: want wrk durations like 10s"
[[ $WORKERS == auto || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS=$WORKERS: want auto or a positive integer"
nginx_workers=$WORKERS haproxy_threads="" xlb_env=()
if [[ $WORKERS != auto ]]; then
	haproxy_threads="nbthread $WORKERS"
	xlb_env=(GOMAXPROCS="$WORKERS")
fi
scenarios=() tls=
for s in $SCENARIOS; do
	case $s in
	http | https | https-new | h2 | grpc) ;;
	*) die "SCENARIOS: unknown scenario $s: want some of http https https-new h2 grpc" ;;
	esac
	[[ " ${scenarios[*]} " == *" $s "* ]] || scenarios+=("$s")
	[[ $s == http || $s == grpc ]] || tls=1
done
((${#scenarios[@]} > 0)) || die "SCENARIOS is empty: want some of http https https-new"
has_scenario() { [[ " ${scenarios[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools

PATH=$PATH:/usr/sbin:/sbin # nginx and haproxy live in /usr/sbin
have() { command -v "$1" >/dev/null 2>&1; }
need=()
have nginx || need+=(nginx)
have haproxy || need+=(haproxy)
have wrk || need+=(wrk)
has_scenario h2 && ! have h2load && need+=(nghttp2-client)
have curl || need+=(curl)
have pgrep || need+=(procps)
[[ -n $tls ]] && ! have openssl && need+=(openssl)
if ((${#need[@]} > 0)); then
	have apt-get || die "missing ${need[*]} and no apt-get: install them by hand"
	[[ $(id -u) -eq 0 ]] || die "missing ${need[*]}: run as root once (or: sudo apt-get install ${need[*]}); the benchmark itself needs no root"
	log "installing ${need[*]} (apt-get; their system services are not started)"
	policy=/usr/sbin/policy-rc.d
	made_policy=
	if [[ ! -e $policy ]]; then
		# Debian's maintainer scripts start nginx/haproxy on install unless a
		# policy says no (exit 101); remove ours afterwards.
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
	fi
	rc=0
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } || rc=$?
	[[ -n $made_policy ]] && rm -f "$policy"
	((rc == 0)) || die "apt-get install ${need[*]} failed"
fi
have "$GO" || die "Go 1.26 or newer is required on PATH (or GO=/path/to/go)"

# ---------------------------------------------------------------- processes

tmp=$(mktemp -d /tmp/xlb-bench-l7.XXXXXX)
chmod 755 "$tmp" # nginx workers run as nobody when started by root
started=()       # pids of the processes this script started (process-tree roots)
wrk_pid=

# tree PID: PID and all its descendants.
tree() {
	local p=$1 c
	echo "$p"
	for c in $(pgrep -P "$p" 2>/dev/null || true); do tree "$c"; done
}

# running PID: the process exists and is not a zombie.
running() {
	local line
	read -r line 2>/dev/null <"/proc/$1/stat" || return 1
	line=${line##*) }
	[[ ${line:0:1} != Z ]]
}

stop_tree() {
	local pids p i alive
	pids=$(tree "$1")
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do # up to 5s to exit, then SIGKILL
		alive=
		for p in $pids; do running "$p" && alive=1; done
		[[ -n $alive ]] || break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	if [[ -n $wrk_pid ]]; then
		kill -TERM "$wrk_pid" 2>/dev/null || true
		wait "$wrk_pid" 2>/dev/null || true
	fi
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop_tree "${started[i]}"; done
	if [[ -n ${KEEP_TMP:-} ]] || ((rc != 0 && rc != 130 && rc != 143)); then
		log "configs, logs and wrk output kept in $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID SECONDS: 0 once PORT accepts, 1 if PID died or time ran out.
wait_port() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		listening "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

tls_ports=()
[[ -n $tls ]] && tls_ports=($NGINX_TLS_PORT $HAPROXY_TLS_PORT $XLB_TLS_PORT)
for p in "${BACKEND_PORTS[@]}" $NGINX_PORT $HAPROXY_PORT $XLB_PORT $XLB_ADMIN_PORT $NGINX_STATUS_PORT $HAPROXY_STATUS_PORT "${tls_ports[@]}"; do
	listening "$p" && die "127.0.0.1:$p is already in use (another benchmark running?)"
done

# ---------------------------------------------------------------- build

if [[ -n ${XLBD:-} ]]; then log "building the backend (xlbd: $XLBD)"; else log "building the backend and bin/xlbd"; fi
"$GO" build -buildvcs=false -o "$tmp/backend" ./test/benchl7/backend || die "go build ./test/benchl7/backend failed"
if has_scenario https-new; then
	"$GO" build -buildvcs=false -o "$tmp/tlsnew" ./test/benchl7/tlsnew || die "go build ./test/benchl7/tlsnew failed"
fi
if has_scenario grpc; then
	"$GO" build -buildvcs=false -o "$tmp/grpcload" ./test/benchl7/grpcload || die "go build ./test/benchl7/grpcload failed"
fi
xlb_reason=
if [[ -n ${XLBD:-} ]]; then
	xlbd=$XLBD
	[[ -x $xlbd ]] || die "XLBD=$xlbd is not an executable"
else
	xlbd=bin/xlbd
	mkdir -p bin
	if ! "$GO" build -o bin/xlbd ./cmd/xlbd 2>"$tmp/xlbd-build.log"; then
		cat "$tmp/xlbd-build.log" >&2
		xlb_reason="go build ./cmd/xlbd failed: $(grep -m1 -v '^#' "$tmp/xlbd-build.log" || true)"
	fi
fi

backends_csv=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}")
backends_csv=${backends_csv%,}
"$tmp/backend" -listen "$backends_csv" 2>"$tmp/backend.log" &
backend_pid=$!
started+=("$backend_pid")
if has_scenario grpc; then
	grpc_csv=$(printf '127.0.0.1:%s,' "${GRPC_BACKEND_PORTS[@]}")
	"$tmp/grpcload" -serve "${grpc_csv%,}" 2>"$tmp/grpc-backend.log" &
	grpc_backend_pid=$!
	started+=("$grpc_backend_pid")
	for p in "${GRPC_BACKEND_PORTS[@]}"; do
		wait_port "$p" "$grpc_backend_pid" 5 || { cat "$tmp/grpc-backend.log" >&2; die "the gRPC backends did not start"; }
	done
fi
for p in "${BACKEND_PORTS[@]}"; do
	wait_port "$p" "$backend_pid" 5 || { cat "$tmp/backend.log" >&2; die "the backend did not start"; }
done

# ---------------------------------------------------------------- configs

# Connections each proxy may hold: what the open-file limit allows (a proxy
# needs two descriptors per proxied connection), at most 4096.
fd_limit=$(ulimit -Hn)
[[ $fd_limit == unlimited ]] && fd_limit=1048576
maxconn=$(((fd_limit - 200) / 2))
((maxconn > 4096)) && maxconn=4096
((CONNS + 200 <= maxconn)) || die "CONNS=$CONNS is too many for the open-file limit ($fd_limit): raise ulimit -n or lower CONNS"

# One certificate and key for all three proxies (haproxy wants both in one file).
# TLS 1.3 suites in the order Go uses with AES hardware, AES-128-GCM first:
# nginx and haproxy pick by their own order, so they choose what xlb chooses.
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
nginx_tls_server="" haproxy_tls_frontend="" xlb_tls_service=""
if [[ -n $tls ]]; then
	mkdir -p "$tmp/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$TLS_NAME" -addext "subjectAltName=DNS:$TLS_NAME,IP:127.0.0.1" \
		-keyout "$tmp/tls/key.pem" -out "$tmp/tls/cert.pem" >"$tmp/tls/openssl.log" 2>&1 ||
		{ cat "$tmp/tls/openssl.log" >&2; die "openssl cannot make the certificate"; }
	cat "$tmp/tls/cert.pem" "$tmp/tls/key.pem" >"$tmp/tls/haproxy.pem"
	tls_fingerprint=$(openssl x509 -noout -fingerprint -sha256 -in "$tmp/tls/cert.pem")
	tls_fingerprint=${tls_fingerprint#*=}

	nginx_tls_server="
    server {                         # https, https-new
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;   # no http2: HTTP/1.1 only
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        # ssl_session_tickets (on), ssl_session_cache (none): nginx's defaults
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }
    }"
	haproxy_tls_frontend="
frontend bench_tls                   # https, https-new; tune.ssl.cachesize and tickets: haproxy's defaults
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $tmp/tls/haproxy.pem ssl-min-ver TLSv1.3 alpn http/1.1 ciphersuites $TLS13_SUITES
    default_backend bench"
	if has_scenario h2; then
		nginx_tls_server+="
    upstream bench_h2 {              # h2: as bench, with room for H2_CONNS x H2_STREAMS requests in flight
        server 127.0.0.1:${BACKEND_PORTS[0]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${BACKEND_PORTS[1]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${BACKEND_PORTS[2]} max_fails=3 fail_timeout=30s;
        keepalive $((H2_CONNS * H2_STREAMS));   # per worker: one worker may hold most client connections
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }
    server {                         # h2
        listen 127.0.0.1:$NGINX_H2_PORT ssl http2;
        ssl_certificate $tmp/tls/cert.pem;
        ssl_certificate_key $tmp/tls/key.pem;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        http2_max_concurrent_streams 128;   # = xlb's SETTINGS_MAX_CONCURRENT_STREAMS
        location / {
            proxy_pass http://bench_h2;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }
    }"
		haproxy_tls_frontend+="
frontend bench_h2                    # h2
    bind 127.0.0.1:$HAPROXY_H2_PORT ssl crt $tmp/tls/haproxy.pem ssl-min-ver TLSv1.3 alpn h2 ciphersuites $TLS13_SUITES
    default_backend bench"
	fi
	xlb_tls_service="
  - name: bench-tls                  # https, https-new: the same service over TLS
    layer: 7
    listen: 127.0.0.1:$XLB_TLS_PORT
    tls: {cert_file: $tmp/tls/cert.pem, key_file: $tmp/tls/key.pem${XLB_TLS_EXTRA:+, $XLB_TLS_EXTRA}}
    scheduler: round_robin
    timeouts: {connect: 2s, response_header: 30s}
    passive_health: {max_fails: 3, fail_timeout: 30s}
    health_check: {type: http, path: /health, expect_status: 200, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3}
    backends:
      - {address: 127.0.0.1:${BACKEND_PORTS[0]}, weight: 1}
      - {address: 127.0.0.1:${BACKEND_PORTS[1]}, weight: 1}
      - {address: 127.0.0.1:${BACKEND_PORTS[2]}, weight: 1}"
fi

nginx_grpc_server="" haproxy_grpc="" xlb_grpc_service=""
if has_scenario grpc; then
	nginx_grpc_server="
    upstream bench_grpc {            # grpc
        server 127.0.0.1:${GRPC_BACKEND_PORTS[0]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${GRPC_BACKEND_PORTS[1]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${GRPC_BACKEND_PORTS[2]} max_fails=3 fail_timeout=30s;
        keepalive $((H2_CONNS * H2_STREAMS));
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }
    server {                         # grpc
        listen 127.0.0.1:$NGINX_GRPC_PORT http2;
        http2_max_concurrent_streams 128;
        location / {
            grpc_pass grpc://bench_grpc;
            grpc_connect_timeout 2s;
            grpc_read_timeout 30s;
        }
    }"
	haproxy_grpc="
frontend bench_grpc                  # grpc
    bind 127.0.0.1:$HAPROXY_GRPC_PORT proto h2
    default_backend bench_grpc
backend bench_grpc
    balance roundrobin
    server g1 127.0.0.1:${GRPC_BACKEND_PORTS[0]} proto h2
    server g2 127.0.0.1:${GRPC_BACKEND_PORTS[1]} proto h2
    server g3 127.0.0.1:${GRPC_BACKEND_PORTS[2]} proto h2"
	xlb_grpc_service="
  - name: bench-grpc                 # grpc: gRPC backends over h2c
    layer: 7
    listen: 127.0.0.1:$XLB_GRPC_PORT
    protocols: [h2]
    backend_protocol: h2c
    scheduler: round_robin
    timeouts: {connect: 2s, response_header: 30s}
    passive_health: {max_fails: 3, fail_timeout: 30s}
    health_check: {type: grpc, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3}
    backends:
      - {address: 127.0.0.1:${GRPC_BACKEND_PORTS[0]}}
      - {address: 127.0.0.1:${GRPC_BACKEND_PORTS[1]}}
      - {address: 127.0.0.1:${GRPC_BACKEND_PORTS[2]}}"
fi

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
# nginx for bench-l7: round robin over the three backends, upstream keep-alive.
worker_processes $nginx_workers;     # auto: one worker per CPU
worker_rlimit_nofile $((2 * maxconn + 100));
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events {
    worker_connections $maxconn;
}
http {
    access_log off;                  # as haproxy (no log line) and xlb (no access log)
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    keepalive_timeout 120s;          # client side, = xlb l7.idle_timeout
    keepalive_requests 1000000;      # no recycling of client connections (haproxy, Go: no limit)
    upstream bench {
        # round robin (the default); passive health = xlb passive_health
        server 127.0.0.1:${BACKEND_PORTS[0]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${BACKEND_PORTS[1]} max_fails=3 fail_timeout=30s;
        server 127.0.0.1:${BACKEND_PORTS[2]} max_fails=3 fail_timeout=30s;
        keepalive 64;                # idle upstream connections kept per worker
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;    # = xlb timeouts.connect
            proxy_read_timeout 30s;      # = xlb timeouts.response_header
        }
    }$nginx_tls_server$nginx_grpc_server
    server {                         # metrics, as xlb's /metrics
        listen 127.0.0.1:$NGINX_STATUS_PORT;
        location = /status { stub_status; }
    }
}
EOF

cat >"$tmp/haproxy.cfg" <<EOF
# haproxy for bench-l7: round robin over the three backends, upstream keep-alive.
global
    # nbthread unset: one thread per CPU
    $haproxy_threads
    maxconn $maxconn
defaults
    mode http
    # no "log": no access log, as nginx (access_log off) and xlb
    option http-keep-alive
    http-reuse always
    timeout connect 2s               # = xlb timeouts.connect
    timeout server 30s               # = xlb timeouts.response_header
    timeout client 120s
    timeout http-request 10s         # = xlb l7.read_header_timeout
    timeout http-keep-alive 120s     # = xlb l7.idle_timeout
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench
backend bench
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server check inter 1s fall 3 rise 2   # = xlb health_check
    server b1 127.0.0.1:${BACKEND_PORTS[0]}
    server b2 127.0.0.1:${BACKEND_PORTS[1]}
    server b3 127.0.0.1:${BACKEND_PORTS[2]}$haproxy_tls_frontend$haproxy_grpc
frontend metrics                     # metrics, as xlb's /metrics
    bind 127.0.0.1:$HAPROXY_STATUS_PORT
    http-request use-service prometheus-exporter if { path /metrics }
EOF

cat >"$tmp/xlb.yaml" <<EOF
# xlbd for bench-l7: one layer 7 service, round robin over the three backends,
# active health checks and metrics on; no access log (no -access-log flag). No
# xdp.interfaces: the L4 data plane is off, nothing is loaded into the kernel.
admin:
  listen: 127.0.0.1:$XLB_ADMIN_PORT
l7:
  drain_timeout: 2s
  read_header_timeout: 10s
  idle_timeout: 120s
services:
  - name: bench
    layer: 7
    listen: 127.0.0.1:$XLB_PORT
    scheduler: round_robin
    timeouts: {connect: 2s, response_header: 30s}
    passive_health: {max_fails: 3, fail_timeout: 30s}
    health_check: {type: http, path: /health, expect_status: 200, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3}
    backends:
      - {address: 127.0.0.1:${BACKEND_PORTS[0]}, weight: 1}
      - {address: 127.0.0.1:${BACKEND_PORTS[1]}, weight: 1}
      - {address: 127.0.0.1:${BACKEND_PORTS[2]}, weight: 1}$xlb_tls_service$xlb_grpc_service
EOF

# ---------------------------------------------------------------- proxies

nginx -t -q -p "$tmp/nginx" -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log" 2>"$tmp/nginx-t.log" ||
	{ cat "$tmp/nginx-t.log" "$tmp/nginx/error.log" >&2 2>/dev/null; die "nginx rejects its config"; }
nginx -p "$tmp/nginx" -c "$tmp/nginx.conf" -e "$tmp/nginx/error.log" -g 'daemon off; master_process on;' 2>"$tmp/nginx.log" &
nginx_pid=$!
started+=("$nginx_pid")
wait_port $NGINX_PORT "$nginx_pid" 10 || { cat "$tmp/nginx.log" "$tmp/nginx/error.log" >&2; die "nginx did not start"; }
[[ -z $tls ]] || wait_port $NGINX_TLS_PORT "$nginx_pid" 10 || { cat "$tmp/nginx.log" "$tmp/nginx/error.log" >&2; die "nginx does not listen on 127.0.0.1:$NGINX_TLS_PORT"; }

haproxy -c -q -f "$tmp/haproxy.cfg" >"$tmp/haproxy-c.log" 2>&1 || { cat "$tmp/haproxy-c.log" >&2; die "haproxy rejects its config"; }
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
started+=("$haproxy_pid")
wait_port $HAPROXY_PORT "$haproxy_pid" 10 || { cat "$tmp/haproxy.log" >&2; die "haproxy did not start"; }
[[ -z $tls ]] || wait_port $HAPROXY_TLS_PORT "$haproxy_pid" 10 || { cat "$tmp/haproxy.log" >&2; die "haproxy does not listen on 127.0.0.1:$HAPROXY_TLS_PORT"; }

xlb_pid=
if [[ -z $xlb_reason ]]; then
	"$xlbd" -check -config "$tmp/xlb.yaml" >"$tmp/xlbd-check.log" 2>&1 ||
		{ cat "$tmp/xlbd-check.log" >&2; die "xlbd -check rejects the benchmark's config: fix scripts/bench-l7.sh${XLB_TLS_EXTRA:+ or XLB_TLS_EXTRA ($XLB_TLS_EXTRA)}"; }
	env "${xlb_env[@]}" "$xlbd" -config "$tmp/xlb.yaml" >"$tmp/xlbd.log" 2>&1 &
	xlb_pid=$!
	started+=("$xlb_pid")
	if ! wait_port $XLB_PORT "$xlb_pid" 15; then
		if kill -0 "$xlb_pid" 2>/dev/null; then
			xlb_reason="xlbd runs but does not listen on 127.0.0.1:$XLB_PORT after 15s"
		else
			wait "$xlb_pid" 2>/dev/null || true
			xlb_reason=$(grep -v '^[[:space:]]*$' "$tmp/xlbd.log" | tail -n 1 || true)
			xlb_reason=${xlb_reason#"$tmp/"}
			: "${xlb_reason:=xlbd exited without a message}"
		fi
		log "xlbd did not start; its output:"
		sed 's/^/    /' "$tmp/xlbd.log" >&2
		stop_tree "$xlb_pid"
		xlb_pid=
	elif [[ -n $tls ]] && ! wait_port $XLB_TLS_PORT "$xlb_pid" 5; then
		xlb_reason="xlbd serves HTTP but does not listen for TLS on 127.0.0.1:$XLB_TLS_PORT"
		sed 's/^/    /' "$tmp/xlbd.log" >&2
		stop_tree "$xlb_pid"
		xlb_pid=
	elif ! curl -fsS -o /dev/null "http://127.0.0.1:$XLB_ADMIN_PORT/metrics"; then
		xlb_reason="xlbd serves but its /metrics on 127.0.0.1:$XLB_ADMIN_PORT does not answer"
		stop_tree "$xlb_pid"
		xlb_pid=
	fi
fi
[[ -n $xlb_reason ]] && printf 'xlb: unavailable: %s\n' "$xlb_reason"

# Every proxy must answer GET / with a backend's 64-byte body before anything is timed.
check_proxy() {
	local body
	body=$(curl -fsS --max-time 5 "http://127.0.0.1:$2/") || die "$1 on 127.0.0.1:$2 does not answer GET /"
	[[ $body == backend\ 127.0.0.1:* ]] || die "$1 on 127.0.0.1:$2 answers GET / with an unexpected body: $body"
}
check_proxy backend "${BACKEND_PORTS[0]}"
check_proxy nginx $NGINX_PORT
check_proxy haproxy $HAPROXY_PORT
[[ -n $xlb_pid ]] && check_proxy xlb $XLB_PORT

# check_tls NAME PORT: the TLS port speaks TLS 1.3 with this run's certificate
# and HTTP/1.1, answers GET / over TLS with a backend's body, and (for
# https-new) tlsnew gets a full handshake from it. Prints what was negotiated.
check_tls() {
	local name=$1 port=$2 out proto cipher group alpn fp body
	out=$(openssl s_client -connect "127.0.0.1:$port" -servername $TLS_NAME -alpn http/1.1 </dev/null 2>/dev/null) ||
		die "$name on 127.0.0.1:$port: openssl s_client cannot connect"
	read -r proto cipher < <(awk '/^New, /{ gsub(",", ""); print $2, $5; exit }' <<<"$out")
	group=$(awk -F': ' '/^Server Temp Key:/ { sub(",.*", "", $2); print $2; exit }' <<<"$out")
	alpn=$(awk -F': ' '/^ALPN protocol:/ { print $2; exit } /^No ALPN/ { print "none"; exit }' <<<"$out")
	fp=$(openssl x509 -noout -fingerprint -sha256 2>/dev/null <<<"$out" || true)
	[[ $proto == TLSv1.3 ]] || die "$name on 127.0.0.1:$port negotiates ${proto:-no TLS}, want TLSv1.3"
	[[ ${fp#*=} == "$tls_fingerprint" ]] || die "$name on 127.0.0.1:$port presents another certificate than $tmp/tls/cert.pem"
	[[ $alpn == http/1.1 || $alpn == none ]] || die "$name on 127.0.0.1:$port selects ALPN $alpn, want http/1.1"
	body=$(curl -fsSk --http1.1 --max-time 5 --resolve "$TLS_NAME:$port:127.0.0.1" "https://$TLS_NAME:$port/") ||
		die "$name on 127.0.0.1:$port does not answer GET / over TLS"
	[[ $body == backend\ 127.0.0.1:* ]] || die "$name on 127.0.0.1:$port answers GET / over TLS with an unexpected body: $body"
	printf '  tls %-8s 127.0.0.1:%s  openssl (as wrk): %s %s %s, ALPN %s, this run'"'"'s certificate\n' "$name" "$port" "$proto" "$cipher" "$group" "$alpn"
	if has_scenario https-new; then
		out=$("$tmp/tlsnew" -check -servername $TLS_NAME "https://127.0.0.1:$port/") || die "$name on 127.0.0.1:$port: tlsnew -check fails: $out"
		printf '  tls %-8s 127.0.0.1:%s  tlsnew:           %s\n' "$name" "$port" "$(sed -n 's/^TLS: //p' <<<"$out")"
	fi
}
# check_h2 NAME PORT: the port speaks HTTP/2 by ALPN and answers 4 GETs with 2xx.
check_h2() {
	local out
	out=$(h2load -n 4 -c 1 "https://127.0.0.1:$2/" 2>&1) || die "$1 on 127.0.0.1:$2: h2load fails: $out"
	grep -q '^Application protocol: h2' <<<"$out" || die "$1 on 127.0.0.1:$2 does not choose h2 by ALPN"
	grep -q '^status codes: 4 2xx' <<<"$out" || die "$1 on 127.0.0.1:$2 does not answer 4 GETs over HTTP/2 with 2xx: $(grep -E '^(requests|status codes):' <<<"$out")"
	printf '  h2  %-8s 127.0.0.1:%s  h2load: ALPN h2, 4 GETs answered 2xx\n' "$1" "$2"
}
tls_checks=
if [[ -n $tls ]]; then
	tls_checks=$(
		check_tls nginx $NGINX_TLS_PORT
		check_tls haproxy $HAPROXY_TLS_PORT
		if [[ -n $xlb_pid ]]; then check_tls xlb $XLB_TLS_PORT; fi
		if has_scenario h2; then
			check_h2 nginx $NGINX_H2_PORT
			check_h2 haproxy $HAPROXY_H2_PORT
			if [[ -n $xlb_pid ]]; then check_h2 xlb $XLB_TLS_PORT; fi
		fi
	) || exit 1
fi

# Every gRPC port answers a unary call (SERVING) before anything is timed.
grpc_checks=
if has_scenario grpc; then
	grpc_checks=$(
		for np in "nginx $NGINX_GRPC_PORT" "haproxy $HAPROXY_GRPC_PORT" ${xlb_pid:+"xlb $XLB_GRPC_PORT"}; do
			read -r n p <<<"$np"
			out=$("$tmp/grpcload" -check "127.0.0.1:$p" 2>&1) || die "$n on 127.0.0.1:$p: a gRPC call fails: $out"
			printf '  grpc %-8s 127.0.0.1:%s  grpcload -check: %s\n' "$n" "$p" "$out"
		done
	) || exit 1
fi

# ---------------------------------------------------------------- measuring

clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of PID's process tree, in clock ticks.
cpu_ticks() {
	local sum=0 p line
	local -a f
	for p in $(tree "$1"); do
		read -r line 2>/dev/null <"/proc/$p/stat" || continue
		line=${line##*) } # the fields after "(comm)"; field 3 (state) is f[0]
		read -r -a f <<<"$line"
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}

# backend_stats: "requests conns" per backend, on one line.
backend_stats() {
	curl -fsS --max-time 5 "http://127.0.0.1:${BACKEND_PORTS[0]}/stats" | awk '{printf "%s %s ", $2, $3}'
}

# passive_opens: TCP connections the kernel has accepted so far (all sockets
# of this network namespace, loopback included).
passive_opens() {
	awk '/^Tcp:/ { if (!col) { for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") col = i } else { print $col; exit } }' /proc/net/snmp
}

# target NAME SCENARIO -> "port pid"
target() {
	case $1-$2 in
	backend-*) echo "${BACKEND_PORTS[0]} $backend_pid" ;;
	nginx-http) echo "$NGINX_PORT $nginx_pid" ;;
	nginx-h2) echo "$NGINX_H2_PORT $nginx_pid" ;;
	nginx-grpc) echo "$NGINX_GRPC_PORT $nginx_pid" ;;
	haproxy-grpc) echo "$HAPROXY_GRPC_PORT $haproxy_pid" ;;
	xlb-grpc) echo "$XLB_GRPC_PORT $xlb_pid" ;;
	nginx-*) echo "$NGINX_TLS_PORT $nginx_pid" ;;
	haproxy-http) echo "$HAPROXY_PORT $haproxy_pid" ;;
	haproxy-h2) echo "$HAPROXY_H2_PORT $haproxy_pid" ;;
	haproxy-*) echo "$HAPROXY_TLS_PORT $haproxy_pid" ;;
	xlb-http) echo "$XLB_PORT $xlb_pid" ;;
	xlb-*) echo "$XLB_TLS_PORT $xlb_pid" ;;
	esac
}

# The load client of each scenario, as its banner says.
load_client() {
	case $1 in
	http) echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency http://127.0.0.1:PORT/" ;;
	https) echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency https://127.0.0.1:PORT/" ;;
	https-new) echo "GOMAXPROCS=$THREADS tlsnew -c $CONNS -d $(go_duration "$DURATION") -servername $TLS_NAME https://127.0.0.1:PORT/" ;;
	h2) echo "h2load -t $THREADS -c $H2_CONNS -m $H2_STREAMS -D $(seconds "$DURATION") https://127.0.0.1:PORT/" ;;
	grpc) echo "GOMAXPROCS=$THREADS grpcload -c $H2_CONNS -m $H2_STREAMS -d $(go_duration "$DURATION") 127.0.0.1:PORT" ;;
	esac
}

# seconds D: a wrk duration in seconds, for h2load -D.
seconds() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

# go_duration D: a wrk duration (10s, 2m, 1h, or 10 meaning seconds) for Go.
go_duration() { if [[ $1 =~ [smh]$ ]]; then echo "$1"; else echo "${1}s"; fi; }

run_load() { # SCENARIO DURATION PORT OUTFILE
	local rc=0
	local -a cmd
	case $1 in
	http) cmd=(wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency "http://127.0.0.1:$3/") ;;
	https) cmd=(wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency "https://127.0.0.1:$3/") ;;
	https-new) cmd=(env GOMAXPROCS="$THREADS" "$tmp/tlsnew" -c "$CONNS" -d "$(go_duration "$2")" -servername $TLS_NAME "https://127.0.0.1:$3/") ;;
	h2) cmd=(h2load -t "$THREADS" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$(seconds "$2")" --log-file="$4.log" "https://127.0.0.1:$3/") ;;
	grpc) cmd=(env GOMAXPROCS="$THREADS" "$tmp/grpcload" -c "$H2_CONNS" -m "$H2_STREAMS" -d "$(go_duration "$2")" "127.0.0.1:$3") ;;
	esac
	"${cmd[@]}" >"$4" 2>&1 &
	wrk_pid=$!
	wait "$wrk_pid" || rc=$?
	wrk_pid=
	return "$rc"
}

# parse_wrk FILE: "requests rps p50_us p99_us errors" (wrk's output or tlsnew's, which has its shape)
parse_wrk() {
	awk '
	function us(v) {
		if (v ~ /us$/) return v + 0
		if (v ~ /ms$/) return (v + 0) * 1000
		if (v ~ /m$/) return (v + 0) * 60e6
		if (v ~ /h$/) return (v + 0) * 3600e6
		if (v ~ /s$/) return (v + 0) * 1e6
		return -1
	}
	/requests in/ { reqs = $1 }
	/^Requests\/sec:/ { rps = $2 }
	/^ *50% / { p50 = us($2) }
	/^ *99% / { p99 = us($2) }
	/Non-2xx or 3xx responses:/ { errs += $NF }
	/Socket errors:/ { gsub(",", ""); errs += $4 + $6 + $8 + $10 }
	END {
		if (reqs == "" || rps == "" || p50 == "" || p99 == "") { print "bad"; exit }
		printf "%d %.2f %.1f %.1f %d\n", reqs, rps, p50, p99, errs + 0
	}' "$1"
}

# parse_h2load FILE: the same fields from h2load's output; its summary has
# no percentiles, so p50 and p99 come from its per-request log (FILE.log,
# --log-file: the third column is each request's time in microseconds).
parse_h2load() {
	local pct
	pct=$(cut -f3 "$1.log" 2>/dev/null | sort -n | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "bad"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "%.1f %.1f\n", v[i50], v[i99]
	}')
	[[ -n $pct && $pct != bad ]] || { echo bad; return; }
	awk -v pct="$pct" '
	/^finished in/ { rps = $4 }
	/^requests:/ { reqs = $8; errs += $12 + $14 + $16 }
	/^status codes:/ { errs += $5 + $7 + $9 }
	/^Application protocol:/ { proto = $3 }
	END {
		if (reqs == "" || rps == "" || proto != "h2") { print "bad"; exit }
		split(pct, q, " ")
		printf "%d %.2f %.1f %.1f %d\n", reqs, rps, q[1], q[2], errs + 0
	}' "$1"
}

results=$tmp/results.tsv # name round rps p50_us p99_us cpu_us_per_req errors scenario conns_per_req resumed
: >"$results"

measure() { # NAME SCENARIO ROUND DURATION (ROUND 0: warm-up, not recorded)
	local name=$1 sc=$2 round=$3 dur=$4 port pid t0 t1 s0 s1 o0 o1 out parsed
	read -r port pid < <(target "$name" "$sc")
	out=$tmp/$sc-$name-$round.txt
	s0=$(backend_stats)
	o0=$(passive_opens)
	t0=$(cpu_ticks "$pid")
	run_load "$sc" "$dur" "$port" "$out" || { cat "$out" >&2; die "$sc load against $name failed"; }
	t1=$(cpu_ticks "$pid")
	o1=$(passive_opens)
	s1=$(backend_stats)
	kill -0 "$pid" 2>/dev/null || die "$name died during the run (logs in $tmp)"
	((round == 0)) && return 0
	if [[ $sc == h2 ]]; then parsed=$(parse_h2load "$out"); else parsed=$(parse_wrk "$out"); fi
	[[ $parsed != bad ]] || { cat "$out" >&2; die "cannot read the load client's output for $name ($sc)"; }
	local reqs rps p50 p99 errs cpu
	read -r reqs rps p50 p99 errs <<<"$parsed"
	cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$reqs" 'BEGIN { printf "%.2f", (n > 0 ? d / hz * 1e6 / n : 0) }')
	# Backend shares and new upstream connections during the run.
	local -a a b
	read -r -a a <<<"$s0"
	read -r -a b <<<"$s1"
	local share conns
	share=$(awk -v r1=$((b[0] - a[0])) -v r2=$((b[2] - a[2])) -v r3=$((b[4] - a[4])) \
		'BEGIN { t = r1 + r2 + r3; if (t == 0) t = 1; printf "%.0f/%.0f/%.0f%%", 100*r1/t, 100*r2/t, 100*r3/t }')
	conns=$((b[1] - a[1] + b[3] - a[3] + b[5] - a[5]))
	# Client connections the proxy accepted: the kernel's count minus the
	# proxy's new backend connections (health checks and other local
	# traffic still add a little).
	local accepted=$((o1 - o0 - conns)) per_req full=- resumed=- tls_note=
	((accepted < 0)) && accepted=0
	per_req=$(awk -v a="$accepted" -v n="$reqs" 'BEGIN { printf "%.3f", (n > 0 ? a / n : 0) }')
	if [[ $sc == https-new ]]; then
		read -r full resumed < <(awk '/^Handshakes:/ { gsub(",", ""); print $3, $5 }' "$out")
		[[ -n $full && -n $resumed ]] || { cat "$out" >&2; die "tlsnew printed no handshake counts for $name"; }
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$p50" "$p99" "$cpu" "$errs" "$sc" "$per_req" "$resumed" >>"$results"
	case $sc in
	https) tls_note=$(printf ', %d client connections accepted' "$accepted") ;;
	https-new) tls_note=$(printf ', handshakes %d full %d resumed, %d client connections accepted (%.3f per request)' "$full" "$resumed" "$accepted" "$per_req") ;;
	esac
	printf '  round %d %-8s %10.0f req/s  p50 %7.2f ms  p99 %7.2f ms  %7.2f us CPU/req  errors %d  backend shares %s, %d new backend connections%s\n' \
		"$round" "$name" "$rps" "$(awk -v v="$p50" 'BEGIN{print v/1000}')" "$(awk -v v="$p99" 'BEGIN{print v/1000}')" \
		"$cpu" "$errs" "$share" "$conns" "$tls_note"
}

# targets SCENARIO: what each scenario measures, in round 1's order. Plain
# HTTP has wrk against a backend as the ceiling; there is no TLS backend.
targets() {
	local -a t=(backend nginx haproxy)
	[[ $1 == http ]] || t=(nginx haproxy)
	[[ -n $xlb_pid ]] && t+=(xlb)
	echo "${t[@]}"
}

printf 'bench-l7: %s, %s CPUs, kernel %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(uname -r)"
printf '  %s; %s; %s; xlbd %s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')" \
	"$(haproxy -v | head -n1 | awk '{print "haproxy " $3}')" "$(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}')" \
	"$(if [[ -n $xlb_pid ]]; then "$xlbd" -version | awk '{print $2}'; else echo unavailable; fi)"
printf '  wrk -t%s -c%s -d%s --latency, %s round(s), warm-up %s per target; backend answers 64 bytes; proxy workers: %s\n' \
	"$THREADS" "$CONNS" "$DURATION" "$ROUNDS" "$WARMUP" "$WORKERS"
if [[ -n $tls ]]; then
	printf '  scenarios: %s; TLS: %s, one ECDSA P-256 certificate (%s) for all\n' "${scenarios[*]}" "$(openssl version | awk '{print "openssl " $2}')" "$TLS_NAME"
	printf '%s\n' "$tls_checks"
fi
[[ -n $grpc_checks ]] && printf '%s\n' "$grpc_checks"

if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
	for sc in "${scenarios[@]}"; do
		for t in $(targets "$sc"); do measure "$t" "$sc" 0 "$WARMUP"; done
	done
fi
for ((r = 1; r <= ROUNDS; r++)); do
	for sc in "${scenarios[@]}"; do
		read -r -a tg <<<"$(targets "$sc")"
		n=${#tg[@]}
		((${#scenarios[@]} > 1)) && printf '  %s: %s\n' "$sc" "$(load_client "$sc")"
		for ((k = 0; k < n; k++)); do
			measure "${tg[((r - 1 + k) % n)]}" "$sc" "$r" "$DURATION"
		done
	done
done

if [[ -n $xlb_pid ]]; then
	curl -fsS "http://127.0.0.1:$XLB_ADMIN_PORT/metrics" | grep -q '^xlb_l7_requests_total' ||
		log "warning: xlbd's /metrics has no xlb_l7_requests_total"
fi

# ---------------------------------------------------------------- report

report() { # SCENARIO
	echo
	case $1 in
	http) echo "http: plain HTTP/1.1 keep-alive ($(load_client http))" ;;
	https) echo "https: HTTP/1.1 keep-alive over TLS 1.3 ($(load_client https)); backends plain HTTP/1.1" ;;
	https-new) echo "https-new: a new connection and a full TLS 1.3 handshake per request, no session resumption ($(load_client https-new)); backends plain HTTP/1.1 keep-alive" ;;
	grpc) echo "grpc: gRPC unary calls in cleartext HTTP/2, $H2_CONNS connections x $H2_STREAMS calls ($(load_client grpc)); backends gRPC servers (grpc-go health service) over h2c; backend shares are not counted (0/0/0%)" ;;
	h2) echo "h2: HTTP/2 over TLS 1.3, $H2_CONNS connections x $H2_STREAMS streams ($(load_client h2)); backends plain HTTP/1.1 keep-alive; p50/p99 from h2load's per-request log" ;;
	esac
	awk -F'\t' -v sc="$1" -v xlb_reason="$xlb_reason" '
function median(name, col,    n, i, j, t, v) {
	n = 0
	for (i = 1; i <= rows; i++) if (nm[i] == name) v[++n] = val[i, col]
	for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
	if (n == 0) return ""
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
$8 == sc {
	rows++; nm[rows] = $1; for (c = 3; c <= 7; c++) val[rows, c] = $c; val[rows, 9] = $9
	if ($7 > 0) errs[$1] += $7
	if ($10 != "-") resumed[$1] += $10
	seen[$1] = 1
}
END {
	tlsx = sc != "http"
	head = sc == "https-new" ? "hs/s" : "req/s"
	printf "%-9s %10s %9s %9s %11s %9s %9s %9s", "proxy", head, "p50 ms", "p99 ms", "CPU us/req", head, "CPU/req", "p99"
	if (tlsx) printf " %9s", "conn/req"
	if (sc == "https-new") printf " %8s", "resumed"
	printf "  %s\n", "errors"
	printf "%-9s %10s %9s %9s %11s %9s %9s %9s\n", "", "(median)", "", "", "", "x nginx", "x nginx", "x nginx"
	nr = median("nginx", 3); nc = median("nginx", 6); n99 = median("nginx", 5)
	split("nginx haproxy xlb backend", order, " ")
	for (k = 1; k <= 4; k++) {
		p = order[k]
		label = p == "backend" ? "backend*" : p
		if (!seen[p]) {
			if (p == "xlb") printf "%-9s %10s   %s\n", "xlb", "unavailable", xlb_reason
			continue
		}
		r = median(p, 3); c = median(p, 6); q50 = median(p, 4); q99 = median(p, 5)
		flag = errs[p] > 0 ? sprintf("%d  ! runs with errors", errs[p]) : "0"
		if (resumed[p] > 0) flag = flag "  ! resumed handshakes"
		printf "%-9s %10.0f %9.2f %9.2f %11.2f %9s %9s %9s", label, r, q50 / 1000, q99 / 1000, c, ratio(r, nr), p == "backend" ? "-" : ratio(c, nc), ratio(q99, n99)
		if (tlsx) printf " %9.3f", median(p, 9)
		if (sc == "https-new") printf " %8d", resumed[p]
		printf "  %s\n", flag
	}
	print ""
	if (sc == "http")
		print "backend*: wrk straight against one backend (no proxy): the ceiling of this machine; its CPU us/req is the backend process'"'"'s."
	if (sc == "https-new") {
		print "hs/s: full TLS handshakes per second: every request is a new connection and a full handshake (tlsnew keeps no session cache;"
		print "resumed counts handshakes that resumed anyway, and must be 0), so requests/s and handshakes/s are the same figure."
	}
	if (tlsx)
		print "conn/req: client connections the proxy accepted per request (kernel PassiveOpens minus new backend connections): ~" (sc == "https" ? "CONNS/requests" : sc == "h2" ? "H2_CONNS/requests" : "1.000") "."
	print "CPU us/req: utime+stime of the proxy'"'"'s process tree (/proc) over the run / requests; lower is better."
	print "Ratios are medians over medians, all from this run; absolute figures depend on the machine (" (sc == "http" ? "wrk" : "the load client") ", proxies and backends share its CPUs)."
}' "$results"
}

for sc in "${scenarios[@]}"; do report "$sc"; done
[[ -n $xlb_reason ]] && printf '\nxlb: unavailable: %s\n' "$xlb_reason"
exit 0
