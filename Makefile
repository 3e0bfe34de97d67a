# coredns-consul: `make demo` runs the local demo, `make test` runs every test.
# Both do all set-up on a fresh machine (Go must be installed).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/coredns-consul/coredns-consul/plugin/consul.Version=$(VERSION) \
           -X github.com/coredns/coredns/coremain.GitCommit=coredns-consul-$(VERSION)

CONSUL  := $(CURDIR)/.cache/bin/consul
COREDNS := $(CURDIR)/bin/coredns
INSPECT := $(CURDIR)/bin/coredns-consul

export CONSUL_BIN  := $(CONSUL)
export COREDNS_BIN := $(COREDNS)
export COREDNS_CONSUL_BIN := $(INSPECT)

.PHONY: all build consul deps test lint demo bench bench-replica bench-fleet bench-follower fuzz soak clean

all: build

## build: the CoreDNS binary with the consul plugin, into bin/coredns, and the snapshot inspector, into bin/coredns-consul
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(COREDNS) ./cmd/coredns
	$(GO) build -o $(INSPECT) ./cmd/coredns-consul

## consul: the real Consul agent for tests and the demo (cached in .cache/bin)
consul:
	scripts/build-consul.sh

## deps: Debian packages the tests and the demo use, installed when missing
deps:
	scripts/deps.sh curl dig cgo haproxy

## test: everything CI runs
test: deps lint consul build
	$(GO) test -count=1 -race -timeout 10m ./plugin/...
	$(GO) test -count=1 -timeout 15m ./cmd/... ./test/...
	$(MAKE) fuzz FUZZTIME=20000x # a count: a duration trips Go 1.26's fuzz deadline race (golang/go#75804)
	DEMO_HOLD=0 scripts/demo.sh # on free ports, like every other test

## soak: the churn soak for SOAK_DURATION (make test runs it for 20s)
SOAK_DURATION ?= 5m
soak: consul build
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -run TestSoak -timeout 2h -v ./test/e2e/ | grep -E 'soak_test|^(---|ok|FAIL)'

## fuzz: every fuzz target for FUZZTIME (make test runs 20,000 inputs each)
FUZZTIME ?= 2m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZTIME) ./plugin/consul/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./plugin/consul/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./plugin/consul/snapshot/
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) ./plugin/consul/replica/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeDelta$$' -fuzztime $(FUZZTIME) ./plugin/consul/tier/

lint:
	@out=$$(gofmt -l cmd plugin test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## demo: Consul dev agent + sample services + CoreDNS with the plugin; Ctrl-C stops it all
# The ports are checked first, in the recipe rather than as a prerequisite so
# that make -j cannot reorder it: a busy port must stop the demo before the
# minutes of building, not after.
demo:
	@scripts/demo.sh --check-ports
	$(MAKE) deps consul build
	scripts/demo.sh

## bench: the plugin side by side with Consul DNS, forward+cache, file and whoami; writes docs/benchmarks.md
bench: consul build
	scripts/deps.sh dnsperf
	$(GO) test -run TestSideBySide -count=1 -timeout 60m -v ./test/bench/ -report=$(CURDIR)/docs/benchmarks.md | grep -v '^\[\|^20[0-9][0-9]-\|CONFIG JSON'
	( echo; echo '## Request path and publishing (Go benchmarks)'; echo; echo '`go test -bench '"'"'ServeDNS$$|Publish|Prepare'"'"' -benchmem ./plugin/consul/`: ServeDNS per question on a 1,000 x 5 snapshot, the answer packed as the server sends it; Publish, one changed service at 5,000 x 10 (the replica'"'"'s map copies, the snapshot and the view); Prepare, the first view of 5,000 x 10 and the bytes it keeps alive per instance.'; echo; echo '```'; $(GO) test -run '^$$' -bench 'ServeDNS$$|Publish|Prepare' -benchmem ./plugin/consul/ | grep Benchmark; echo '```'; echo; echo 'A question as the server runs it, on a new goroutine whose stack starts at 2 KB, scrubbed to 512 bytes and packed, beside whoami: `GODEBUG=adaptivestackstart=0 go test -bench OnNewGoroutine -cpu 1 -benchmem ./plugin/consul/`.'; echo; echo '```'; GODEBUG=adaptivestackstart=0 $(GO) test -run '^$$' -bench OnNewGoroutine -cpu 1 -benchmem ./plugin/consul/ | grep Benchmark; echo '```' ) | tee -a docs/benchmarks.md

## bench-replica: initial sync at 5,000 x 10 and propagation at 1,000 services, against a real agent
bench-replica: consul build
	$(GO) test -run '^$$' -bench 'InitialSync|Propagation' -benchtime 1x -timeout 30m -v ./test/bench/ | grep -v '^\[\|^20[0-9][0-9]-'

## bench-fleet: what each watched service costs a client agent and the servers (docs/fleet-cost.md)
bench-fleet: consul
	FLEET_REPORT=$(CURDIR)/docs/fleet-cost-run.md $(GO) test -run '^$$' -bench FleetCost -benchtime 1x -timeout 30m -v ./test/bench/ | grep -v '^\[\|^20[0-9][0-9]-'

## bench-follower: the follower mode at 1, 10 and 50 followers of two tiers: the servers' streams, propagation, the tiers' cost (docs/fleet-cost.md)
bench-follower: consul build
	FOLLOWER_REPORT=$(CURDIR)/docs/follower-cost-run.md $(GO) test -run '^TestFollowerFleet$$' -count=1 -timeout 30m -v ./test/bench/ | grep -v '^\[\|^20[0-9][0-9]-'

clean:
	rm -rf bin
