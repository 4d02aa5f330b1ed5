//go:build unix && !solaris

package dbtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbkit-go/database/dbkit"
)

// PatroniOptions configures [StartPatroni].
type PatroniOptions struct {
	// Nodes is how many PostgreSQL nodes run under Patroni: 3 when 0.
	Nodes int
	// Synchronous turns Patroni's synchronous_mode on: a commit returns once
	// a synchronous standby has it, so that a failover loses no
	// acknowledged write.
	Synchronous bool
}

// Patroni is a PostgreSQL cluster managed by Patroni, with a one-member etcd
// as its configuration store, for failover tests. Start it with
// [StartPatroni], stop it with [Patroni.Stop].
type Patroni struct {
	dir      string // everything: etcd/, node1/..., the pid files
	cred     *syscall.Credential
	patroni  string // the patroni binary
	password string // the superuser's
	sync     bool
	nodes    []*PatroniNode
	http     *http.Client

	etcd     child
	etcdPort int
	wdDone   chan struct{} // closed once the watchdog has exited
	wdPipe   *os.File      // the watchdog's stdin: closing it makes it clean up

	stopOnce sync.Once
	stopErr  error
}

// How long the cluster's waits last at most, whatever the caller's ctx (as
// the Cluster's do): a caller that gives no deadline gets an error rather
// than a test hung until go test's timeout.
const (
	patroniHealthyTimeout = 2 * time.Minute  // WaitHealthy: a failover, a rewind, a node's rejoining
	patroniRestartTimeout = 2 * time.Minute  // Restart: a killed node's PostgreSQL running again
	switchoverTimeout     = time.Minute      // Switchover: Patroni's answer, then the new leader seen
	createReplayTimeout   = 30 * time.Second // CreateDatabase: every running node has the database
)

// errPatroniExited reports a node's patroni that exited by itself.
var errPatroniExited = errors.New("patroni exited")

// PatroniNode is one PostgreSQL node of a [Patroni] cluster and its Patroni.
type PatroniNode struct {
	p       *Patroni
	name    string
	dir     string // patroni.yml, patroni.log, data/
	port    int    // postgres
	apiPort int    // Patroni's REST API

	mu    sync.Mutex
	proc  *child // the running patroni, nil once killed
	count int    // how many times patroni was started, for the log
}

// PatroniMember is a node as Patroni's REST API describes it (GET /cluster).
type PatroniMember struct {
	Name  string `json:"name"`
	Role  string `json:"role"`  // "leader", "replica", "sync_standby"
	State string `json:"state"` // "running", "streaming", "starting", "stopped", ...
	Host  string `json:"host"`
	Port  int    `json:"port"`
}

// patroniSettings are the dynamic settings of the cluster (bootstrap.dcs):
// the leader key lives 10 s, Patroni's loop runs every second, a DCS or
// PostgreSQL call is retried for 3 s; a leader whose postmaster died is not
// restarted in place but failed over at once (primary_start_timeout 0); a
// former primary rejoins with pg_rewind, which needs wal_log_hints and
// full_page_writes (left on, unlike StartLocal's servers: with it off, a
// rewind fails and the former primary stays down).
const patroniSettings = `    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    synchronous_mode: %t
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 64MB
        max_connections: 200
        fsync: "off"
`

// StartPatroni starts etcd (one member) and opts.Nodes PostgreSQL nodes (3
// by default) under Patroni 3, all on 127.0.0.1 on free ports, and returns
// once a leader and the other nodes, streaming from it, run (and, with
// opts.Synchronous, one of them is the synchronous standby). The nodes are
// named node1, node2... and the PostgreSQL binaries are those [StartLocal]
// runs. Patroni's settings: ttl 10, loop_wait 1, retry_timeout 3,
// primary_start_timeout 0 (a primary whose postmaster dies is failed over,
// not restarted in place), use_pg_rewind with wal_log_hints (a former
// primary rejoins by itself), synchronous_mode per opts, fsync off.
//
// When the process runs as root, etcd, Patroni and PostgreSQL run as the
// "postgres" user. Everything runs in a directory of its own, which a
// watchdog process removes, after killing what runs there, when the test
// process ends without calling [Patroni.Stop]. It fails, rather than
// letting tests skip, when patroni or etcd is not installed (Debian:
// apt-get install patroni etcd-server).
func StartPatroni(ctx context.Context, opts PatroniOptions) (*Patroni, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 {
		return nil, fmt.Errorf("dbtest: StartPatroni: %d nodes", opts.Nodes)
	}
	patroniBin, etcdBin, err := findPatroni()
	if err != nil {
		return nil, err
	}
	_, postgres, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(serverParentDir(), "dbkit-patroni-")
	if err != nil {
		return nil, fmt.Errorf("dbtest: %w", err)
	}
	p := &Patroni{
		dir: dir, cred: cred, patroni: patroniBin, password: randomHex(16), sync: opts.Synchronous,
		// No connection kept between calls: they are few, and a test may
		// count its goroutines.
		http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if err := p.startWatchdog(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := p.chown(dir); err != nil {
		_ = p.Stop(context.Background())
		return nil, err
	}
	if err := p.startEtcd(ctx, etcdBin); err != nil {
		_ = p.Stop(context.Background())
		return nil, err
	}
	binDir, err := patroniBinDir(postgres)
	if err != nil {
		_ = p.Stop(context.Background())
		return nil, err
	}
	for i := range opts.Nodes {
		n, err := p.newNode(fmt.Sprintf("node%d", i+1), binDir)
		if err != nil {
			_ = p.Stop(context.Background())
			return nil, err
		}
		p.nodes = append(p.nodes, n)
	}
	for _, n := range p.nodes {
		if err := n.start(); err != nil {
			_ = p.Stop(context.Background())
			return nil, err
		}
	}
	if err := p.WaitHealthy(ctx); err != nil { // which has a cap of its own
		err = fmt.Errorf("dbtest: Patroni cluster did not come up: %w\n%s", err, p.Logs())
		_ = p.Stop(context.Background())
		return nil, err
	}
	return p, nil
}

// findPatroni returns the paths of the patroni and etcd binaries.
func findPatroni() (patroni, etcd string, err error) {
	find := func(name string) string {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
		for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/usr/sbin"} {
			if path := filepath.Join(dir, name); isExecutable(path) {
				return path
			}
		}
		return ""
	}
	patroni, etcd = find("patroni"), find("etcd")
	if patroni == "" || etcd == "" {
		return "", "", errors.New("dbtest: StartPatroni needs patroni (3.0 or later) and etcd (3.4 or later) " +
			"on PATH or in /usr/bin: install them (Debian/Ubuntu: apt-get install patroni etcd-server)")
	}
	return patroni, etcd, nil
}

// patroniBinDir returns the directory of the PostgreSQL installation of the
// server binary postgres (which may be a link into it, as from
// /usr/local/bin): Patroni runs pg_ctl, pg_controldata, pg_rewind and
// pg_basebackup from there.
func patroniBinDir(postgres string) (string, error) {
	dirs := []string{filepath.Dir(postgres)}
	if real, err := filepath.EvalSymlinks(postgres); err == nil {
		dirs = append([]string{filepath.Dir(real)}, dirs...)
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "pg_ctl")) && isExecutable(filepath.Join(d, "pg_controldata")) &&
			isExecutable(filepath.Join(d, "pg_rewind")) && isExecutable(filepath.Join(d, "pg_basebackup")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("dbtest: Patroni needs pg_ctl, pg_controldata, pg_rewind and pg_basebackup beside postgres, in %s",
		strings.Join(dirs, " or "))
}

// watchdogScript kills what runs in the cluster's directory ($1) and removes
// it once its stdin, a pipe whose other end only the test process holds,
// reaches its end: when the test process stops the cluster or dies,
// however it dies. PostgreSQL is started by Patroni through an
// intermediate process that exits, so no death signal reaches it.
//
// Patroni and etcd get SIGKILL, then each postmaster SIGQUIT (an immediate
// shutdown: SIGKILL would leave its System V shared memory behind) and,
// a second later, SIGKILL if it still runs. It runs as the servers' user
// (their files are its input) and signals only positive process IDs whose
// working directory, where /proc tells it, is in the cluster's directory:
// a pid file it did not write, or a pid another process got since, cannot
// make it signal anything else.
const watchdogScript = `while read -r _; do :; done
dir=$(cd "$1" 2>/dev/null && pwd -P) || exit 0
ours() {
  [ -d /proc/self ] || return 0
  case "$(readlink "/proc/$1/cwd" 2>/dev/null)" in "$dir"|"$dir"/*) return 0;; esac
  return 1
}
sig() { case "$2" in ''|*[!0-9]*) return 1;; esac; [ "$2" -gt 1 ] && ours "$2" && kill "-$1" "$2" 2>/dev/null; }
killed=
for f in "$dir"/*.pid; do [ -f "$f" ] && sig KILL "$(cat "$f")" && killed=1; done
quit=
for f in "$dir"/*/data/postmaster.pid; do
  [ -f "$f" ] && pm=$(head -n 1 "$f") && sig QUIT "$pm" && quit="$quit $pm"
done
if [ -n "$quit" ]; then
  sleep 1
  for pm in $quit; do sig KILL "$pm"; done
  killed=1
fi
[ -n "$killed" ] && sleep 1
rm -rf "$dir"
`

func (p *Patroni) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = r.Close() }()
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "dbtest-patroni-watchdog", p.dir)
	cmd.Stdin = r
	cmd.Env = serverEnv()
	// A session of its own: a terminal's ^C reaches the test process, not
	// the watchdog, which must outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return fmt.Errorf("dbtest: start the watchdog: %w", err)
	}
	p.wdPipe, p.wdDone = w, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.wdDone) }()
	return nil
}

// chown gives path to the servers' user.
func (p *Patroni) chown(path string) error {
	if p.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	return nil
}

// writeFile writes a file of the cluster's, readable by the servers' user only.
func (p *Patroni) writeFile(path, content string) error {
	if err := writeFileAs(path, []byte(content), 0o600, p.cred); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	return nil
}

// writePid records a process the watchdog kills.
func (p *Patroni) writePid(name string, pid int) {
	_ = writeFileAs(filepath.Join(p.dir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644, nil)
}

func (p *Patroni) startEtcd(ctx context.Context, bin string) error {
	dir := filepath.Join(p.dir, "etcd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	if err := p.chown(dir); err != nil {
		return err
	}
	client, err1 := freePort()
	peer, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	p.etcdPort = client
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	logFile, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(bin,
		"--name", "etcd1", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "etcd1="+peerURL, "--initial-cluster-state", "new",
		"--initial-cluster-token", filepath.Base(p.dir),
		"--unsafe-no-fsync")
	if err := p.etcd.start(cmd, dir, p.cred, logFile); err != nil {
		return err
	}
	p.writePid("etcd", cmd.Process.Pid)
	log := func() string { return p.logTail(filepath.Join(dir, "etcd.log"), 20) }
	return p.etcd.waitReady(ctx, 30*time.Second, "etcd", log, func() (bool, error) {
		body, err := p.get(ctx, clientURL+"/health")
		if err != nil {
			return false, err
		}
		var h struct {
			Health string `json:"health"`
		}
		if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
			return false, fmt.Errorf("etcd /health: %s", body)
		}
		return true, nil
	})
}

// newNode makes a node's directory and patroni.yml; binDir holds the
// PostgreSQL binaries.
func (p *Patroni) newNode(name, binDir string) (*PatroniNode, error) {
	n := &PatroniNode{p: p, name: name, dir: filepath.Join(p.dir, name)}
	if err := os.Mkdir(n.dir, 0o700); err != nil {
		return nil, fmt.Errorf("dbtest: %w", err)
	}
	if err := p.chown(n.dir); err != nil {
		return nil, err
	}
	var err1, err2 error
	n.port, err1 = freePort()
	n.apiPort, err2 = freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`scope: %s
name: %s
log:
  level: INFO
restapi:
  listen: 127.0.0.1:%d
  connect_address: 127.0.0.1:%d
etcd3:
  hosts: 127.0.0.1:%d
bootstrap:
  dcs:
%s  initdb:
    - encoding: UTF8
    - locale: C
    - no-sync
postgresql:
  listen: 127.0.0.1:%d
  connect_address: 127.0.0.1:%d
  data_dir: %s
  bin_dir: %s
  pgpass: %s
  authentication:
    superuser:
      username: postgres
      password: %s
    replication:
      username: replicator
      password: %s
  parameters:
    unix_socket_directories: %s
    dynamic_shared_memory_type: mmap
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
`, filepath.Base(p.dir), name, n.apiPort, n.apiPort, p.etcdPort, fmt.Sprintf(patroniSettings, p.sync),
		n.port, n.port, filepath.Join(n.dir, "data"), binDir, filepath.Join(n.dir, "pgpass"),
		p.password, p.password, n.dir)
	if err := p.writeFile(filepath.Join(n.dir, "patroni.yml"), conf); err != nil {
		return nil, err
	}
	return n, nil
}

// start runs the node's patroni; its log is appended to.
func (n *PatroniNode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		select {
		case <-n.proc.exited:
		default:
			return fmt.Errorf("dbtest: %s: patroni already runs", n.name)
		}
	}
	logPath := filepath.Join(n.dir, "patroni.log")
	logFile, err := openLog(logPath, os.O_APPEND, 0o666)
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	n.count++
	_, _ = fmt.Fprintf(logFile, "---- dbtest: patroni start #%d at %s\n", n.count, time.Now().Format(time.RFC3339Nano))
	proc := &child{}
	if err := proc.start(exec.Command(n.p.patroni, filepath.Join(n.dir, "patroni.yml")), n.dir, n.p.cred, logFile); err != nil {
		return err
	}
	n.proc = proc
	n.p.writePid(n.name, proc.cmd.Process.Pid)
	return nil
}

// Nodes returns the cluster's nodes, node1 first.
func (p *Patroni) Nodes() []*PatroniNode { return p.nodes }

// Name returns the node's name (node1, node2...), Patroni's and its
// PostgreSQL's cluster_name.
func (n *PatroniNode) Name() string { return n.name }

// Host returns the address PostgreSQL listens on: 127.0.0.1.
func (n *PatroniNode) Host() string { return "127.0.0.1" }

// Port returns the node's PostgreSQL port.
func (n *PatroniNode) Port() int { return n.port }

// APIURL returns the address of the node's Patroni REST API.
func (n *PatroniNode) APIURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.apiPort) }

// Config returns the superuser's configuration for database: node1 as Host
// and Port, the other nodes as Fallbacks, TargetSessionAttrs "read-write"
// (a connection settles on the primary, wherever it is), sslmode disable
// and a ConnectTimeout of 2 s, so that a dead node is passed over quickly.
func (p *Patroni) Config(database string) dbkit.Config {
	cfg := dbkit.Config{
		Host: p.nodes[0].Host(), Port: p.nodes[0].port, Database: database,
		User: "postgres", Password: p.password, SSLMode: "disable",
		TargetSessionAttrs: "read-write", ConnectTimeout: 2 * time.Second,
		ApplicationName: "dbtest",
	}
	for _, n := range p.nodes[1:] {
		cfg.Fallbacks = append(cfg.Fallbacks, dbkit.Endpoint{Host: n.Host(), Port: n.port})
	}
	return cfg
}

// NodeConfig returns the superuser's configuration for database on node n
// alone, whatever its role.
func (p *Patroni) NodeConfig(n *PatroniNode, database string) dbkit.Config {
	cfg := p.Config(database)
	cfg.Host, cfg.Port, cfg.Fallbacks, cfg.TargetSessionAttrs = n.Host(), n.port, nil, ""
	return cfg
}

// CreateDatabase creates an empty database named name on the primary,
// waits (30 s at most) until every node whose patroni runs has it (not one
// that [PatroniNode.KillNode] stopped), and returns [Patroni.Config] for
// it.
//
// The wait matters: pgx tries the next host of a multi-host configuration
// on a connection error or a server in the wrong role, but not on a
// "database does not exist" (3D000) from a replica that has not replayed
// the CREATE DATABASE yet, which fails the connection.
func (p *Patroni) CreateDatabase(ctx context.Context, name string) (dbkit.Config, error) {
	if err := p.exec(ctx, p.Config("postgres"), "CREATE DATABASE "+quote(name)); err != nil {
		return dbkit.Config{}, fmt.Errorf("dbtest: create database %q: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, createReplayTimeout)
	defer cancel()
	for _, n := range p.nodes {
		n.mu.Lock()
		killed := n.proc == nil
		n.mu.Unlock()
		if killed {
			continue // it replays the creation once restarted
		}
		for {
			err := p.exec(ctx, p.NodeConfig(n, name), "SELECT 1")
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return dbkit.Config{}, fmt.Errorf("dbtest: database %q created, but not on %s: %w (%w)", name, n.name, err, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return p.Config(name), nil
}

// exec runs one statement on a connection of its own.
func (p *Patroni) exec(ctx context.Context, cfg dbkit.Config, query string) error {
	conn, err := pgx.Connect(ctx, cfg.DSN())
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, query)
	return err
}

// get returns the body of a 2xx answer to GET url.
func (p *Patroni) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Members returns the cluster's members as Patroni sees them (GET /cluster
// on the first node whose REST API answers).
func (p *Patroni) Members(ctx context.Context) ([]PatroniMember, error) {
	var errs []error
	for _, n := range p.nodes {
		body, err := p.get(ctx, n.APIURL()+"/cluster")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var c struct {
			Members []PatroniMember `json:"members"`
		}
		if err := json.Unmarshal(body, &c); err != nil {
			return nil, fmt.Errorf("dbtest: Patroni's /cluster: %w: %s", err, body)
		}
		return c.Members, nil
	}
	return nil, fmt.Errorf("dbtest: no Patroni REST API answers: %w", errors.Join(errs...))
}

// node returns the node named name.
func (p *Patroni) node(name string) *PatroniNode {
	for _, n := range p.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// Leader returns the node Patroni holds as the leader, running; an error
// when there is none at the moment (during a failover).
func (p *Patroni) Leader(ctx context.Context) (*PatroniNode, error) {
	members, err := p.Members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.Role == "leader" && m.State == "running" {
			if n := p.node(m.Name); n != nil {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("dbtest: no running leader: %s", describeMembers(members))
}

func describeMembers(members []PatroniMember) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = fmt.Sprintf("%s %s/%s", m.Name, m.Role, m.State)
	}
	return strings.Join(parts, ", ")
}

// healthy returns nil when the cluster is whole: a running leader that is
// not in recovery, every other node running as a replica (a sync_standby
// among them in synchronous mode), and as many replicas streaming from the
// leader (pg_stat_replication) as there are other nodes.
func (p *Patroni) healthy(ctx context.Context) error {
	for _, n := range p.nodes {
		n.mu.Lock()
		proc := n.proc
		n.mu.Unlock()
		if proc == nil {
			continue // killed on purpose
		}
		select {
		case <-proc.exited:
			return fmt.Errorf("%w: patroni of %s exited (%v)", errPatroniExited, n.name, proc.waitErr)
		default:
		}
	}
	members, err := p.Members(ctx)
	if err != nil {
		return err
	}
	var leader *PatroniNode
	replicas, syncs := 0, 0
	for _, m := range members {
		switch {
		case m.Role == "leader" && m.State == "running":
			leader = p.node(m.Name)
		case (m.Role == "replica" || m.Role == "sync_standby") && (m.State == "running" || m.State == "streaming"):
			replicas++
			if m.Role == "sync_standby" {
				syncs++
			}
		}
	}
	want := len(p.nodes) - 1
	switch {
	case leader == nil:
		return fmt.Errorf("no running leader: %s", describeMembers(members))
	case replicas < want:
		return fmt.Errorf("%d of %d replicas running: %s", replicas, want, describeMembers(members))
	case p.sync && want > 0 && syncs == 0:
		return fmt.Errorf("no sync_standby: %s", describeMembers(members))
	}
	conn, err := pgx.Connect(ctx, p.NodeConfig(leader, "postgres").DSN())
	if err != nil {
		return fmt.Errorf("leader %s: %w", leader.name, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var recovery bool
	var streaming, syncStreaming int
	err = conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'),
		(SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum'))`).
		Scan(&recovery, &streaming, &syncStreaming)
	switch {
	case err != nil:
		return fmt.Errorf("leader %s: %w", leader.name, err)
	case recovery:
		return fmt.Errorf("leader %s is still in recovery", leader.name)
	case streaming < want:
		return fmt.Errorf("%d of %d replicas stream from the leader %s", streaming, want, leader.name)
	case p.sync && want > 0 && syncStreaming == 0:
		return fmt.Errorf("no synchronous standby streams from the leader %s", leader.name)
	}
	return nil
}

// WaitHealthy waits until the cluster is whole again: a running leader, the
// other nodes streaming from it as replicas and, in synchronous mode, one of
// them its synchronous standby. It polls every 200 ms until ctx ends, or 2
// minutes at most; the error then says what was missing.
func (p *Patroni) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, patroniHealthyTimeout)
	defer cancel()
	for {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.healthy(tctx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, errPatroniExited) {
			return fmt.Errorf("dbtest: Patroni cluster not healthy: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbtest: Patroni cluster not healthy: %w (%w)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Switchover asks Patroni for a planned switchover away from the current
// leader (POST /switchover on its REST API, Patroni choosing the
// candidate: the synchronous standby in synchronous mode) and waits until
// another node runs as the leader. It returns the former and the new
// leader. It waits until ctx ends, or a minute at most.
func (p *Patroni) Switchover(ctx context.Context) (from, to *PatroniNode, err error) {
	ctx, cancel := context.WithTimeout(ctx, switchoverTimeout)
	defer cancel()
	from, err = p.Leader(ctx)
	if err != nil {
		return nil, nil, err
	}
	body, _ := json.Marshal(map[string]string{"leader": from.name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, from.APIURL()+"/switchover", strings.NewReader(string(body)))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// Patroni answers once the switchover is done, or has failed.
	resp, err := (&http.Client{Timeout: time.Minute, Transport: p.http.Transport}).Do(req)
	if err != nil {
		return from, nil, fmt.Errorf("dbtest: switchover from %s: %w", from.name, err)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return from, nil, fmt.Errorf("dbtest: switchover from %s: %s: %s", from.name, resp.Status, strings.TrimSpace(string(answer)))
	}
	for {
		to, err = p.Leader(ctx)
		if err == nil && to != from {
			return from, to, nil
		}
		select {
		case <-ctx.Done():
			return from, nil, fmt.Errorf("dbtest: switchover from %s: no new leader (%v): %w", from.name, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// postmaster returns what the node's postmaster.pid says, once it is
// checked that its postmaster runs, in the node's data directory (not a
// process that got its pid since).
func (n *PatroniNode) postmaster() (postmasterFile, error) {
	pm, err := readPostmasterFile(filepath.Join(n.dir, "data"))
	if err != nil {
		return pm, fmt.Errorf("dbtest: %s: no postmaster: %w", n.name, err)
	}
	if !processRunning(pm.pid) || !processIn(pm.pid, pm.dataDir) {
		return pm, fmt.Errorf("dbtest: %s: no postmaster runs (postmaster.pid names %d)", n.name, pm.pid)
	}
	return pm, nil
}

// KillPostmaster kills the node's postmaster with SIGKILL (kill -9) and
// waits until it and its children are gone; Patroni goes on running. On
// the leader, with primary_start_timeout 0, this is a failover; the node
// comes back as a replica by itself.
func (n *PatroniNode) KillPostmaster() error {
	pm, err := n.postmaster()
	if err != nil {
		return err
	}
	// Patroni starts PostgreSQL again on the data directory, which reclaims
	// the shared memory the killed postmaster left.
	return stopPostmaster(pm, false, false)
}

// stopPostmaster ends the postmaster pm and waits until it and its
// children have exited. With quit it gets SIGQUIT first, an immediate
// shutdown (which removes its shared memory), and SIGKILL only if it still
// runs 5 s later; without, SIGKILL at once, as a crash. With free, the System
// V shared memory segment a killed postmaster leaves is removed: nothing
// reclaims it when nothing starts on its data directory again, and it
// outlives the directory.
func stopPostmaster(pm postmasterFile, quit, free bool) error {
	children := childProcesses(pm.pid)
	if quit {
		_ = syscall.Kill(pm.pid, syscall.SIGQUIT)
		waitProcessesGone([]int{pm.pid}, 5*time.Second)
	}
	if processRunning(pm.pid) && processIn(pm.pid, pm.dataDir) {
		if err := syscall.Kill(pm.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("dbtest: kill %d: %w", pm.pid, err)
		}
		if left := waitProcessesGone([]int{pm.pid}, 10*time.Second); len(left) > 0 {
			return fmt.Errorf("dbtest: process %d still runs 10s after SIGKILL", pm.pid)
		}
	}
	if err := reapChildren(pm.pid, children); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	if free && pm.shmKey != 0 {
		removeSharedMemory(pm.shmKey, pm.shmID)
	}
	return nil
}

// KillNode kills the node's patroni, then its postmaster, with SIGKILL:
// the loss of the node. [PatroniNode.Restart] brings it back.
func (n *PatroniNode) KillNode() error { return n.kill(false) }

// kill kills the node's patroni, then stops its postmaster: with SIGKILL
// (a crash), or with quit an immediate shutdown first (see stopPostmaster).
func (n *PatroniNode) kill(quit bool) error {
	n.mu.Lock()
	proc := n.proc
	n.proc = nil
	n.mu.Unlock()
	if proc != nil {
		_ = proc.cmd.Process.Kill()
		select {
		case <-proc.exited:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("dbtest: %s: patroni still runs 10s after SIGKILL", n.name)
		}
		// Gone: the watchdog must not signal its pid, which another process
		// may get.
		_ = os.Remove(filepath.Join(n.p.dir, n.name+".pid"))
	}
	pm, err := n.postmaster()
	if err != nil {
		return nil // no postmaster runs
	}
	return stopPostmaster(pm, quit, true)
}

// Restart starts the node's patroni again after [PatroniNode.KillNode] and
// waits until its PostgreSQL runs (as a replica: a former primary is
// rewound with pg_rewind first), 2 minutes at most. [Patroni.WaitHealthy]
// then waits until it streams.
func (n *PatroniNode) Restart(ctx context.Context) error {
	if err := n.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, patroniRestartTimeout)
	defer cancel()
	for {
		body, err := n.p.get(ctx, n.APIURL()+"/patroni")
		if err == nil {
			var st struct {
				State string `json:"state"`
			}
			if json.Unmarshal(body, &st) == nil && st.State == "running" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dbtest: %s did not come back (%v): %w\n%s", n.name, err, ctx.Err(), n.p.Logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of the file at path.
func (p *Patroni) logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(b, lines)
}

// Logs returns the end of every log: etcd's, then each node's Patroni log
// (which holds its PostgreSQL's), for a failure message.
func (p *Patroni) Logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "==== etcd (%s)\n%s\n", p.dir, p.logTail(filepath.Join(p.dir, "etcd", "etcd.log"), 15))
	for _, n := range p.nodes {
		fmt.Fprintf(&b, "==== %s (postgres 127.0.0.1:%d, api %s)\n%s\n", n.name, n.port, n.APIURL(),
			p.logTail(filepath.Join(n.dir, "patroni.log"), 40))
	}
	return b.String()
}

// Stop kills every process of the cluster (Patroni first, so that it
// restarts nothing, then PostgreSQL, then etcd) and removes its directory.
// The data is thrown away, so nothing is shut down gracefully: PostgreSQL
// gets an immediate shutdown (SIGQUIT), which frees its shared memory, and
// SIGKILL if it has not exited within 5 s. It is safe to call twice.
func (p *Patroni) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		var errs []error
		for _, n := range p.nodes {
			errs = append(errs, n.kill(true))
		}
		errs = append(errs, p.etcd.terminate(ctx, syscall.SIGKILL, 5*time.Second, "etcd"))
		// Everything is stopped: the pid files go with the directory, so
		// that the watchdog does not kill process IDs the system may have
		// given to others since.
		if err := os.RemoveAll(p.dir); err != nil {
			errs = append(errs, fmt.Errorf("dbtest: %w", err))
		}
		if p.wdPipe != nil {
			_ = p.wdPipe.Close() // the watchdog finds nothing left
			select {
			case <-p.wdDone:
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("dbtest: the Patroni watchdog did not exit within 10s"))
			case <-ctx.Done():
				errs = append(errs, ctx.Err())
			}
		}
		p.stopErr = errors.Join(errs...)
	})
	return p.stopErr
}
