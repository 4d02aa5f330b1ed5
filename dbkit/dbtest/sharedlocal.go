//go:build unix

package dbtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// One local server for a whole "go test ./..." run.
//
// go test runs the test binaries of several packages at once. Each would
// start a server of its own; instead the first one starts a watchdog process
// (the test binary run again, in the mode this file's init selects) that
// runs the server, and every test binary that needs a server leases it:
//
//   - <base>.lock serialises attaching to, starting and stopping the server;
//   - <base>.json, the state, names the watchdog, the directory, the port
//     and the superuser's password (mode 0600, in a directory of the user's);
//   - <dir>/users.lock holds one shared flock per test process using the
//     server, which the kernel releases when the process ends, however it
//     ends.
//
// The watchdog stops the server when it has had no user for DBKIT_TEST_SERVER_IDLE
// (default 5s), taking <base>.lock first so that no process attaches while it
// stops. postgres runs as the watchdog's child and, on Linux, dies with it.

// envWatchdog, set only by dbtest for the process it starts, makes that
// process the watchdog of the shared server whose files start with its value.
const envWatchdog = "DBKIT_DBTEST_WATCHDOG"

// defaultIdle is how long a shared local server outlives its last user.
const defaultIdle = 5 * time.Second

// init turns the process into a watchdog when, and only when, dbtest started
// it as one; otherwise it does nothing.
func init() {
	if base := os.Getenv(envWatchdog); base != "" {
		os.Exit(runWatchdog(base))
	}
}

// sharedState is the content of <base>.json.
type sharedState struct {
	Watchdog int    `json:"watchdog"` // pid
	Dir      string `json:"dir"`
	Port     int    `json:"port"`
	Password string `json:"password"`
}

// sharedBase is the path, without extension, of the lock and state files of
// the shared server of this user and these binaries.
func sharedBase(initdb string) string {
	sum := sha256.Sum256([]byte(initdb))
	return filepath.Join(serverParentDir(), fmt.Sprintf("dbkit-shared-%d-%x", os.Getuid(), sum[:4]))
}

// startSharedLocal returns the local server shared by the test processes of
// this user, starting it (with its watchdog) if none runs. The returned
// Server holds a lease on it until Stop or the end of the process.
func startSharedLocal(ctx context.Context) (*Server, error) {
	initdb, _, err := findBinaries()
	if err != nil {
		return nil, err
	}
	base := sharedBase(initdb)
	lock, err := flockFile(ctx, base+".lock", syscall.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("dbtest: shared server: %w", err)
	}
	defer lock.Close()
	s, err := attachShared(ctx, base)
	if err == nil {
		return s, nil
	}
	// None, or a stale one: its watchdog stops it when it sees no user.
	_ = os.Remove(base + ".json")
	if err := startWatchdog(ctx, base); err != nil {
		return nil, err
	}
	return attachShared(ctx, base)
}

// attachShared leases the server that <base>.json names and connects to it.
// The caller holds <base>.lock.
func attachShared(ctx context.Context, base string) (*Server, error) {
	st, err := readState(base)
	if err != nil {
		return nil, err
	}
	if !processAlive(st.Watchdog) {
		return nil, fmt.Errorf("watchdog %d is gone", st.Watchdog)
	}
	lease, err := flockFile(ctx, filepath.Join(st.Dir, "users.lock"), syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	ls := &localServer{dir: st.Dir, port: st.Port, password: st.Password}
	s := ls.server(func(context.Context) error { return lease.Close() })
	s.hint = func(db string) string {
		return fmt.Sprintf("psql -h %s -p %d -U postgres %s (until the shared server stops, %s after the "+
			"run's last test process; %s=1h keeps it longer)", st.Dir, st.Port, db, idleTime(), EnvServerIdle)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.connectAdmin(ctx); err != nil {
		lease.Close()
		return nil, err
	}
	return s, nil
}

func readState(base string) (sharedState, error) {
	var st sharedState
	raw, err := os.ReadFile(base + ".json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("%s.json: %w", base, err)
	}
	return st, nil
}

// startWatchdog starts the watchdog of base and waits until its server
// accepts connections or it fails. The caller holds <base>.lock.
func startWatchdog(ctx context.Context, base string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: %w", err)
	}
	defer r.Close()
	// -test.run=^$: should the binary not become a watchdog, it runs no test.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envWatchdog+"="+base)
	cmd.ExtraFiles = []*os.File{w} // fd 3: the report
	// A session of its own: Ctrl-C on go test ends the test processes, whose
	// leases end, and the watchdog then stops the server in order.
	// Standard streams are /dev/null, or go test would wait for it to exit.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: start watchdog: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it exits before this process

	deadline := time.Now().Add(2 * time.Minute)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = r.SetReadDeadline(deadline)
	report, err := io.ReadAll(r)
	switch {
	case err != nil:
		_ = cmd.Process.Kill()
		return fmt.Errorf("dbtest: shared server: waiting for the watchdog: %w", err)
	case string(report) != "ok":
		return fmt.Errorf("dbtest: shared server: %s", strings.TrimPrefix(string(report), "error: "))
	}
	return nil
}

// runWatchdog runs the shared server of base until it has had no user for
// the idle time, and returns the process's exit code.
func runWatchdog(base string) int {
	// fd 3 must not reach postgres, or the report would not end until it does.
	syscall.CloseOnExec(3)
	report := os.NewFile(3, "report")
	fail := func(err error) int {
		if report != nil {
			fmt.Fprintf(report, "error: %v", err)
			report.Close()
		}
		return 1
	}
	idle, err := idleTimeFromEnv()
	if err != nil {
		return fail(err)
	}
	stopSignals := make(chan os.Signal, 1)
	signal.Notify(stopSignals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, ls, err := startLocal(ctx)
	cancel()
	if err != nil {
		return fail(err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	}
	users := filepath.Join(ls.dir, "users.lock")
	st := sharedState{Watchdog: os.Getpid(), Dir: ls.dir, Port: ls.port, Password: ls.password}
	if err := os.WriteFile(users, nil, 0o600); err != nil {
		stop()
		return fail(err)
	}
	if err := writeState(base, st); err != nil {
		stop()
		return fail(err)
	}
	fmt.Fprint(report, "ok")
	report.Close()

	var idleSince time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ls.exited: // postgres died: forget it
			removeStateOf(base, st)
			stop()
			return 1
		case <-stopSignals:
			removeStateOf(base, st)
			stop()
			return 0
		case <-tick.C:
		}
		if !unused(users) {
			idleSince = time.Time{}
			continue
		}
		if idleSince.IsZero() {
			idleSince = time.Now()
		}
		if time.Since(idleSince) < idle {
			continue
		}
		// Stop, unless a process is attaching (it holds <base>.lock) or
		// attached since the last look.
		lock, err := flockFile(context.Background(), base+".lock", syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			continue
		}
		held, err := flockFile(context.Background(), users, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			lock.Close()
			idleSince = time.Time{}
			continue
		}
		removeStateOf(base, st)
		stop()
		held.Close()
		lock.Close()
		return 0
	}
}

// idleTimeFromEnv is DBKIT_TEST_SERVER_IDLE, or the default.
func idleTimeFromEnv() (time.Duration, error) {
	v := os.Getenv(EnvServerIdle)
	if v == "" {
		return defaultIdle, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 5s or 1h", EnvServerIdle, v)
	}
	return d, nil
}

// idleTime is the idle time, as written for people.
func idleTime() string {
	if d, err := idleTimeFromEnv(); err == nil {
		return d.String()
	}
	return defaultIdle.String()
}

// unused reports whether no process holds a lease in users.lock.
func unused(users string) bool {
	f, err := flockFile(context.Background(), users, syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// writeState writes <base>.json atomically, readable by its owner only.
func writeState(base string, st sharedState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", base, os.Getpid())
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, base+".json")
}

// removeStateOf removes <base>.json if it still describes st (a process
// that found this server dead may have started another since).
func removeStateOf(base string, st sharedState) {
	if cur, err := readState(base); err == nil && cur == st {
		_ = os.Remove(base + ".json")
	}
}

// flockFile opens (creating) path and takes the flock how; without
// LOCK_NB it waits, polling, until it gets it or ctx ends.
// Closing the file releases the lock; so does the end of the process.
func flockFile(ctx context.Context, path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || how&syscall.LOCK_NB != 0 {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
