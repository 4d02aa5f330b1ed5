//go:build failover

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbkit-go/database/dbkit"
	"github.com/dbkit-go/database/dbkit/dbtest"
	"github.com/dbkit-go/database/examples/migrations"
)

// syncLog is a log buffer for concurrent writers.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRESTThroughAFailover: the API keeps answering while the primary
// changes (a Patroni switchover). POST /users answers 201, or 503 with
// Retry-After while no server takes writes, or 500 saying the outcome is
// unknown for a write whose answer a crash took; GET /users, read from the
// replicas (every node is named as one), keeps answering 200 throughout,
// and the former primary rejoins the read rotation once it is a standby.
// make test-failover runs it (build tag failover).
func TestRESTThroughAFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := dbtest.StartPatroni(ctx, dbtest.PatroniOptions{Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(p.Logs())
		}
		_ = p.Stop(context.Background())
	})
	cfg, err := p.CreateDatabase(ctx, "rest")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes() {
		cfg.Replicas = append(cfg.Replicas, dbkit.Replica{Host: n.Host(), Port: n.Port(), Name: n.Name()})
	}
	cfg.ReplicaCheckInterval = 200 * time.Millisecond
	var log syncLog
	db, err := dbkit.Connect(ctx, cfg, dbkit.WithMigrations(migrations.All...),
		dbkit.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	api := httptest.NewServer(routes(newUsers(db)))
	defer api.Close()

	var (
		mu       sync.Mutex
		statuses = map[string]int{} // "POST 201", "GET 200", "POST 503"...
		bad      []string
		stop     atomic.Bool
		n        atomic.Int64
	)
	record := func(method string, resp *http.Response, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", method, err))
			return
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		statuses[fmt.Sprintf("%s %d", method, resp.StatusCode)]++
		switch {
		case method == "GET" && resp.StatusCode == http.StatusOK:
		case method == "POST" && resp.StatusCode == http.StatusCreated:
		case method == "POST" && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		case method == "POST" && resp.StatusCode == http.StatusInternalServerError && strings.Contains(body.String(), "outcome is unknown"):
		default:
			bad = append(bad, fmt.Sprintf("%s %d %s", method, resp.StatusCode, strings.TrimSpace(body.String())))
		}
	}
	client := &http.Client{Timeout: 15 * time.Second}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				i := n.Add(1)
				body := fmt.Sprintf(`{"email":"u%d-%d@example.com","name":"U"}`, w, i)
				resp, err := client.Post(api.URL+"/users", "application/json", strings.NewReader(body))
				record("POST", resp, err)
				resp, err = client.Get(api.URL + "/users?size=5")
				record("GET", resp, err)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	from, to, err := p.Switchover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	// The former primary, a standby again, serves reads again.
	rejoined := "msg=\"dbkit: read replica in the rotation\" replica=" + from.Name() + " "
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), rejoined); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the former primary %s did not rejoin the read rotation; log:\n%s", from.Name(), log.String())
			break
		}
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("switchover %s -> %s; responses: %v", from.Name(), to.Name(), statuses)
	for i, b := range bad[:min(len(bad), 10)] {
		t.Errorf("response %d of %d not as promised: %s", i+1, len(bad), b)
	}
	if statuses["POST 201"] == 0 || statuses["GET 200"] == 0 {
		t.Errorf("no request succeeded: %v", statuses)
	}
}
