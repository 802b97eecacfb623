#!/usr/bin/env bash
# Installs what building and testing xlb needs on Debian/Ubuntu, and nothing
# that is already there. Go itself (1.26+) is a prerequisite: Debian's is too old.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang || need+=(clang)
have llvm-strip || need+=(llvm)
have bpftool || need+=(bpftool)
have ip || need+=(iproute2)
have ethtool || need+=(ethtool)
# dnsmasq for the discovery tests; -base is the binary alone: the dnsmasq
# package also enables a system service on port 53.
have dnsmasq || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
have bird || need+=(bird2) # the router of the BGP scale-out test and demo (bird, birdc)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)

if [ ${#need[@]} -gt 0 ]; then
	if ! have apt-get; then
		echo "deps: missing ${need[*]} and no apt-get: install them by hand" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}: run as root (or: sudo apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! have go; then
	echo "deps: Go 1.26 or newer is required (https://go.dev/dl/); put it on PATH" >&2
	exit 1
fi
