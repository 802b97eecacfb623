// Package bpf holds xlb's XDP programs (C) and their bpf2go bindings.
//
// The generated *_bpfel.go and *_bpfel.o files are committed so that `go build`
// needs no clang; `make generate` rebuilds them and CI checks they are fresh.
package bpf

//go:generate go tool bpf2go -go-package bpf -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -type svc_key -type svc -type backend -type flow_key -type flow -type flow_way -type flow_bucket -type frag_key -type frag -type rl_key -type icmp_rl_key -type counters -type stat -type globals -type nexthop -type xlb_stat Lb lb.c
//go:generate go tool bpf2go -go-package bpf -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -type xlb_decap_stat -type lpm4_key -type lpm6_key Decap decap.c
//go:generate go tool bpf2go -go-package bpf -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -type bench_pkt Bench bench.c
