# xlb — eBPF/XDP L4 + L7 load balancer. `make help` lists the targets.

GO      ?= go
PKGS    ?= ./...
GOFLAGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install missing build and test packages (apt; needs root)
	@scripts/deps.sh

.PHONY: generate
generate: ## rebuild the bpf2go bindings and objects from bpf/*.c (needs clang)
	$(GO) generate ./bpf/

.PHONY: check-generated
check-generated: generate ## fail if the committed bpf2go output is stale
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- bpf/)" || { git status --porcelain -- bpf/; echo "untracked bpf2go output: commit it"; exit 1; }

.PHONY: build
build: ## build xlbd and xlbctl into bin/
	$(GO) build $(GOFLAGS) -o bin/ ./cmd/...

PREFIX ?= /usr/local
.PHONY: install
install: build ## install xlbd, xlbctl and the systemd unit (root; DESTDIR, PREFIX); an existing /etc/xlb/xlb.yaml is kept
	install -D -m 0755 bin/xlbd $(DESTDIR)$(PREFIX)/bin/xlbd
	install -D -m 0755 bin/xlbctl $(DESTDIR)$(PREFIX)/bin/xlbctl
	install -d $(DESTDIR)/etc/systemd/system
	sed 's#/usr/local/bin/#$(PREFIX)/bin/#g' cmd/xlbd/xlbd.service >$(DESTDIR)/etc/systemd/system/xlbd.service
	chmod 0644 $(DESTDIR)/etc/systemd/system/xlbd.service
	test -e $(DESTDIR)/etc/xlb/xlb.yaml || install -D -m 0644 cmd/xlbd/xlb.example.yaml $(DESTDIR)/etc/xlb/xlb.yaml
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb]\.go$$')); test -z "$$out" || { echo "not gofmt'ed:"; echo "$$out"; exit 1; }
	$(GO) vet $(PKGS)

.PHONY: test
test: deps ## run every test (as root: program, namespace and integration tests too)
	$(GO) test $(GOFLAGS) -count=1 -timeout 20m $(PKGS)

.PHONY: test-race
test-race: deps ## every test under the race detector, xlbd and xlbctl in test/integration built with -race too (slow; not in CI)
	XLB_TEST_RACE=1 $(GO) test $(GOFLAGS) -race -count=1 -timeout 60m $(PKGS)

.PHONY: bench
bench: deps ## XDP per-packet cost against floor programs (root; run in the foreground)
	$(GO) test $(GOFLAGS) -count=1 -run '^$$' -bench XDP -benchtime 1x ./test/bench/

.PHONY: demo
demo: deps ## run xlb on built-in namespaces with live traffic (root; Ctrl-C cleans up)
	@scripts/demo.sh

.PHONY: demo-bgp
demo-bgp: deps ## two xlb nodes announce a VIP by BGP to a BIRD router (ECMP); one dies, traffic moves (root; Ctrl-C cleans up)
	@scripts/demo-bgp.sh

.PHONY: vm-test
vm-test: ## run make test and a short make demo in a Debian 12 VM (Vagrant, for non-Linux hosts)
	vagrant up --provision
	vagrant ssh -c 'cd /xlb && sudo -E env PATH=$$PATH:/usr/local/go/bin make test && sudo -E env PATH=$$PATH:/usr/local/go/bin DEMO_SECONDS=40 make demo'

.PHONY: bench-l7
bench-l7: ## L7 requests/s, latency and CPU per request: xlb vs NGINX vs HAProxy (wrk; run in the foreground)
	@scripts/bench-l7.sh
