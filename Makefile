# dbkit: make demo, make test (see README.md).
SHELL := /bin/bash
GO    ?= go
PKGS  ?= ./...
BENCH_COUNT ?= 10

.PHONY: demo test test-docker test-pgbouncer test-failover bench lint cover

## demo: run the quickstart on DATABASE_URL, else on a database of its own on DBKIT_TEST_DATABASE_URL's server,
## else on an ephemeral PostgreSQL it starts (see examples/quickstart)
demo:
	$(GO) run ./examples/quickstart

## test: every test, integration included, with the race detector. Tests start
## their own PostgreSQL (local binaries, Docker, or DBKIT_TEST_DATABASE_URL).
## Prints go test's result lines and the reason of every skipped test.
test:
	set -o pipefail; $(GO) test -race -count=1 -v $(PKGS) 2>&1 \
	  | grep -Ev '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS: |PASS$$)'

## test-docker: dbtest's Testcontainers path for real, on Debian as root with no registry: dockerd in a network
## namespace of its own (loopback only), a PostgreSQL 15 image built from Debian packages and kept in
## .cache/docker-test, Ryuk off; fails if TestTestcontainersServer skips (scripts/test-docker.sh, docs/testing.md)
test-docker:
	./scripts/test-docker.sh

## test-pgbouncer: the integration suite's repository and transaction tests through PgBouncer 1.18 in transaction
## mode (apt-get install pgbouncer): DBKIT_TEST_PGBOUNCER=1 points the tests' configurations at it, QueryExecMode
## exec, migrations on the server itself (DirectHost); docs/scaling.md. Run: the tests of repository, repository_sql,
## tx, writes, atomic, where, page, relation, rows, keys and cursor_notnull. Excluded, as measured through it:
## tx_cancel (statements cancelled at their deadline: PgBouncer 1.18 crashes when a client closes before its cancel
## request is forwarded, pgbouncer#801); migrate_* (they drive migrate.Migrator on the pooled address: refused with
## ErrTransactionPooler by design, tested in pgbouncer_test.go); sqlcomment, close, LockTimeoutNamesTheHolder (they
## read pg_stat_activity of one session, or SET a session TimeZone); WithPgxConn (LISTEN); roles other than the
## superuser (connect, print, tracing, otlp: not in PgBouncer's auth_file); StatementTimeout (faults: the startup
## "options" PgBouncer 1.18 refuses); a server restart (faults); SchemaChangeInsideATransaction (cache_statement's
## stale plan, which exec mode never meets); README and doc samples (processes of their own, no DirectHost).
PGBOUNCER_FILES := repository_test.go repository_sql_test.go tx_test.go writes_test.go atomic_test.go where_test.go \
  page_test.go relation_test.go rows_test.go keys_test.go cursor_notnull_test.go
PGBOUNCER_TESTS := $(shell cd integration 2>/dev/null && grep -ho '^func Test[A-Za-z0-9_]*' $(PGBOUNCER_FILES) \
  | sed 's/^func //' | paste -sd'|')
# A file renamed or gone fails the target, rather than its tests silently not running (all of them: go test
# -run '^()$$' runs nothing and passes).
test-pgbouncer:
	@for f in $(PGBOUNCER_FILES); do [ -f "integration/$$f" ] || { echo "test-pgbouncer: integration/$$f is gone: update PGBOUNCER_FILES"; exit 1; }; done
	@[ -n "$(PGBOUNCER_TESTS)" ] || { echo "test-pgbouncer: no Test functions in PGBOUNCER_FILES"; exit 1; }
	set -o pipefail; DBKIT_TEST_PGBOUNCER=1 $(GO) test -race -count=1 -v -run '^($(PGBOUNCER_TESTS))$$' ./integration/ 2>&1 \
	  | grep -Ev '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS: |PASS$$)'

## test-failover: dbkit through the death of a primary on a real 3-node Patroni cluster (apt-get install patroni
## etcd-server; dbtest.StartPatroni): a switchover, the leader's postmaster killed, the leader's node lost, under 16
## writers, on an asynchronous then a synchronous cluster; asserts nothing acknowledged lost in synchronous mode and
## the unavailability bounds, and prints the figures of docs/ha.md; and examples/rest answering through a switchover. DBKIT_FAILOVER_SECONDS (default 15) per scenario;
## about 4 minutes on 2 cores. Build tag "failover": make test does not compile these tests. -p 1: one cluster at once.
test-failover:
	$(GO) test -tags failover -race -count=1 -v -p 1 -timeout 15m -run '^(TestFailover|TestStartPatroni|TestPatroniDiesWithTestProcess|TestPatroniStopFreesSharedMemory|TestRESTThroughAFailover)$$' \
	  ./integration/failover/ ./dbkit/dbtest/ ./examples/rest/

## bench: dbkit vs bare GORM vs raw pgx (and vs bun: the peer table of bench/, a module of its own), reads over read replicas and the routing's cost, a write with associations (atomic) vs GORM with and without its transaction, telemetry off vs on, trace comments off vs on, and dbtest's per-test database, interleaved runs, summarised by benchstat
## (see docs/performance.md). BENCH_COUNT runs of every benchmark, 10 by default.
bench:
	@mkdir -p .bench
	$(GO) test -c -o .bench/dbkit.test ./dbkit/
	$(GO) test -c -o .bench/integration.test ./integration/
	$(GO) test -c -o .bench/dbtest.test ./dbkit/dbtest/
	cd bench && $(GO) test -c -o ../.bench/peers.test .
	@rm -f bench.txt
	@for i in $$(seq $(BENCH_COUNT)); do \
	  echo "bench: run $$i of $(BENCH_COUNT)"; \
	  (cd dbkit && ../.bench/dbkit.test -test.run '^$$' -test.bench Overhead -test.benchmem) >> bench.txt || exit 1; \
	  (cd integration && ../.bench/integration.test -test.run '^$$' -test.bench . -test.benchmem) >> bench.txt || exit 1; \
	  (cd dbkit/dbtest && ../../.bench/dbtest.test -test.run '^$$' -test.bench NewDatabase -test.benchtime 100x) >> bench.txt || exit 1; \
	  (cd dbkit/dbtest && ../../.bench/dbtest.test -test.run '^$$' -test.bench StartLocal -test.benchtime 5x) >> bench.txt || exit 1; \
	  (cd bench && ../.bench/peers.test -test.run '^$$' -test.bench Peer -test.benchmem) >> bench.txt || exit 1; \
	done
	@echo "dbkit among its peers (bench/, a module of its own): raw pgx is the limit"
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/Peer/' \
	  -col '/impl@(pgx gorm bun dbkit)' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -col '/impl@(gorm dbkit pgx)' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/CreateWithOrders/' \
	  -col '/impl@(gorm_notx gorm dbkit)' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/Telemetry(Get|Create)/' \
	  -col '/impl@(off sdk_span on on_sync on_repo on_otlp on_otlp_10pc)' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/TraceComments/' \
	  -col '/impl@(on comments on_exec on_describe)' bench.txt
	$(GO) run ./internal/benchratio -base gorm,off,on bench.txt
	@echo "telemetry against the SDK's own cost for the statement's one span (the floor):"
	$(GO) run ./internal/benchratio -base sdk_span -goal 'OverheadTelemetryGet/on<=1.15' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/NewDatabase|StartLocal/' \
	  -col '/impl@(template migrate truncate)' bench.txt
	$(GO) run ./internal/benchratio -base pgx,keyset_first,template bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/ReplicaReads/' \
	  -col '/impl@(primary replicas)' bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:/OverheadRoute/' \
	  -col '/impl@(single replicas replicas_session)' bench.txt

## lint: gofmt, go vet (of bench/ too, a module of its own), and golangci-lint (.golangci.yml: errcheck, govet,
## ineffassign, staticcheck, unused)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	(cd bench && $(GO) vet ./...)
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run $(PKGS)

## cover: coverage of every package by every test
cover:
	$(GO) test -count=1 -coverpkg=./dbkit/...,./migrate/...,./tracing/... -coverprofile=coverage.out $(PKGS)
	$(GO) tool cover -func=coverage.out | tail -n 1
