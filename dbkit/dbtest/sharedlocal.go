//go:build unix && !solaris

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

	"golang.org/x/sys/unix"
)

// One local server for a whole "go test ./..." run.
//
// go test runs the test binaries of several packages at once. Each would
// start a server of its own; instead the first one starts a watchdog process
// (the test binary run again, in the mode this file's init selects) that
// runs the server, and every test binary that needs a server leases it.
// The rendezvous is a directory of the user's own, mode 0700
// (<DBKIT_PG_TMPDIR or the temporary directory>/dbkit-<uid>), holding for
// each module and set of binaries:
//
//   - <base>.lock, which serialises attaching to, starting and stopping the
//     server;
//   - <base>.json, the state: the server's directory, port, superuser
//     password and idle time, and the watchdog's pid;
//   - <base>.log, the watchdog's standard error.
//
// In the server's directory, the watchdog holds an exclusive flock on
// owner.lock for as long as it lives, and every test process using the
// server holds a shared flock on users.lock. The kernel releases both when
// their process ends, however it ends. The watchdog stops the server when
// users.lock has been free for the idle time (DBKIT_TEST_SERVER_IDLE of the
// process that started it, default 5s), holding <base>.lock so that no
// process attaches meanwhile. postgres runs as the watchdog's child and, on
// Linux, dies with it.

// envWatchdog, set only by dbtest for the process it starts, makes that
// process the watchdog of the shared server whose files start with its value.
const envWatchdog = "DBKIT_DBTEST_WATCHDOG"

// sharedProtocol is part of the rendezvous name: dbtest versions that do
// not speak the same protocol do not meet.
const sharedProtocol = "1"

// defaultIdle is how long a shared local server outlives its last user.
const defaultIdle = 5 * time.Second

// init turns the process into a watchdog when, and only when, dbtest started
// it as one (the variable set and the report pipe open as fd 3); otherwise
// it does nothing.
func init() {
	if base := os.Getenv(envWatchdog); base != "" && isPipe(3) {
		os.Exit(runWatchdog(base))
	}
}

func isPipe(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO
}

// sharedState is the content of <base>.json.
type sharedState struct {
	Watchdog int           `json:"watchdog"` // its pid, for people
	Dir      string        `json:"dir"`
	Port     int           `json:"port"`
	Password string        `json:"password"`
	Idle     time.Duration `json:"idle"`
}

// sharedBase is the path, without extension, of the lock, state and log
// files of the shared server of this user, module and binaries. Servers are
// not shared between modules: their templates could clash.
func sharedBase(initdb string) (string, error) {
	parent := os.TempDir()
	if d := os.Getenv(EnvPGTmpDir); d != "" {
		parent = d
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(parent, fmt.Sprintf("dbkit-%d", os.Getuid()))
	if err := privateDir(dir); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(sharedProtocol + "\x00" + initdb + "\x00" + moduleRoot()))
	return filepath.Join(dir, fmt.Sprintf("shared-%x", sum[:8])), nil
}

// privateDir creates dir, mode 0700, if it does not exist, and checks that
// it is a directory of this user's that nobody else can write to: the
// state file in it holds a password, and is trusted.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s must be a directory of user %d's, mode 0700 (it is %v): remove it, or set %s",
			dir, os.Getuid(), fi.Mode(), EnvPGTmpDir)
	}
	return nil
}

// moduleRoot is the directory of the go.mod above the working directory
// (go test runs a package's tests in its directory), or the working
// directory.
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

// startSharedLocal returns the local server shared by the test processes of
// this user and module, starting it (with its watchdog) if none runs. The
// returned Server holds a lease on it until Stop or the end of the process.
func startSharedLocal(ctx context.Context) (*Server, error) {
	initdb, _, err := findBinaries()
	if err != nil {
		return nil, err
	}
	base, err := sharedBase(initdb)
	if err != nil {
		return nil, fmt.Errorf("dbtest: shared server: %w", err)
	}
	lock, err := flockFile(ctx, base+".lock", syscall.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("dbtest: shared server: %w", err)
	}
	defer func() { _ = lock.Close() }()
	s, err := attachShared(ctx, base)
	if err == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("dbtest: shared server: %w", ctx.Err())
	}
	// None, or a dead one: forget it. A dead watchdog's directory goes (its
	// postgres died with it, or shuts down within a minute of the directory
	// going); a live watchdog whose server did not answer stops it when it
	// sees no user.
	if st, err := readState(base); err == nil && !ownerAlive(st.Dir) {
		_ = os.RemoveAll(st.Dir)
	}
	_ = os.Remove(base + ".json")
	if err := startWatchdog(ctx, base); err != nil {
		return nil, err
	}
	s, err = attachShared(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("dbtest: shared server started, but: %w", err)
	}
	return s, nil
}

// attachShared leases the server that <base>.json names and connects to it.
// The caller holds <base>.lock.
func attachShared(ctx context.Context, base string) (*Server, error) {
	st, err := readState(base)
	if err != nil {
		return nil, err
	}
	if !ownerAlive(st.Dir) {
		return nil, fmt.Errorf("the watchdog of %s is gone", st.Dir)
	}
	lease, err := os.OpenFile(filepath.Join(st.Dir, "users.lock"), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lease.Fd()), syscall.LOCK_SH); err != nil {
		_ = lease.Close()
		return nil, fmt.Errorf("lease %s: %w", lease.Name(), err)
	}
	ls := &localServer{dir: st.Dir, port: st.Port, password: st.Password}
	s := ls.server(func(context.Context) error { return lease.Close() })
	s.hint = func(db string) string {
		return fmt.Sprintf("psql -h %s -p %d -U postgres %s (until the shared server stops, %v after the "+
			"run's last test process; start the run with %s=1h to keep it longer)", st.Dir, st.Port, db, st.Idle, EnvServerIdle)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.connectAdmin(ctx); err != nil {
		_ = lease.Close()
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
// accepts connections, or it fails. The caller holds <base>.lock.
func startWatchdog(ctx context.Context, base string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: %w", err)
	}
	logFile, err := openLog(base+".log", os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dbtest: shared server: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: %w", err)
	}
	defer func() { _ = r.Close() }()
	cmd := &exec.Cmd{
		Path: exe,
		// A name for ps; -test.run=^$ should the binary not become a watchdog.
		Args: []string{"dbkit-dbtest-watchdog", "-test.run=^$"},
		Env:  append(absolutePaths(os.Environ()), envWatchdog+"="+base),
		Dir:  "/",
		// Standard output is /dev/null, or go test would wait for the
		// watchdog to exit.
		Stderr:     logFile,
		ExtraFiles: []*os.File{w}, // fd 3: the report
		// A session of its own: Ctrl-C on go test ends the test processes,
		// whose leases end, and the watchdog then stops the server in order.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		return fmt.Errorf("dbtest: shared server: start watchdog: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it if it exits before this process

	deadline := time.Now().Add(2 * time.Minute)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = r.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Now()) })
	report, err := io.ReadAll(r)
	stop()
	msg := string(report)
	switch {
	case err != nil:
		// SIGTERM: the watchdog stops what it started (initdb, postgres)
		// and removes its directory.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("dbtest: shared server: waiting for the watchdog: %w", err)
	case msg == "ok":
		return nil
	case msg == "":
		var status error
		select {
		case status = <-exited:
		case <-time.After(5 * time.Second):
			status = errors.New("still running")
		}
		log, _ := os.ReadFile(base + ".log")
		return fmt.Errorf("dbtest: shared server: the watchdog process ended (%v) before its server was ready; %s.log:\n%s",
			status, base, tail(log, 20))
	case strings.HasPrefix(msg, "dbtest:"):
		return errors.New(msg)
	default:
		return fmt.Errorf("dbtest: shared server: %s", msg)
	}
}

// absolutePaths returns env with the variables naming directories made
// absolute: the watchdog runs in /, the test process in its package.
func absolutePaths(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case EnvPGTmpDir, EnvPGBin, "TMPDIR":
			if abs, err := filepath.Abs(v); err == nil && v != "" {
				kv = k + "=" + abs
			}
		}
		out = append(out, kv)
	}
	return out
}

// runWatchdog runs the shared server of base until it has had no user for
// the idle time, or its directory is gone, or a signal asks it to stop, and
// returns the process's exit code.
func runWatchdog(base string) int {
	// Nothing this process inherited may reach postgres or outlive the
	// test process: fd 3 is closed on exec, and descriptors the test process
	// inherited without close-on-exec (a CI script's pipe, make's jobserver)
	// are closed here. The Go runtime's own all have close-on-exec set.
	syscall.CloseOnExec(3)
	closeInheritedFiles()
	_ = os.Unsetenv(envWatchdog)
	report := os.NewFile(3, "report")
	fail := func(err error) int {
		fmt.Fprint(report, err)
		_ = report.Close()
		return 1
	}
	idle, err := idleTimeFromEnv()
	if err != nil {
		return fail(err)
	}
	stopSignals := make(chan os.Signal, 1)
	signal.Notify(stopSignals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	// A signal while the server starts stops initdb or postgres, and the
	// start cleans up after itself.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	s, ls, err := startLocal(ctx)
	cancelTimeout()
	cancel()
	if err != nil {
		return fail(err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	}
	usersPath := filepath.Join(ls.dir, "users.lock")
	users, err := os.OpenFile(usersPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		stop()
		return fail(err)
	}
	defer func() { _ = users.Close() }()
	st := sharedState{Watchdog: os.Getpid(), Dir: ls.dir, Port: ls.port, Password: ls.password, Idle: idle}
	if err := writeState(base, st); err != nil {
		stop()
		return fail(err)
	}
	fmt.Fprint(report, "ok")
	_ = report.Close()

	// shutdown stops the server; lock is <base>.lock if the caller holds
	// it, else it is taken (within a few seconds) so that no process
	// attaches to the stopping server.
	shutdown := func(lock *os.File) {
		if lock == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			lock, _ = flockFile(ctx, base+".lock", syscall.LOCK_EX)
			cancel()
		}
		removeStateOf(base, st)
		stop()
		if lock != nil {
			_ = lock.Close()
		}
	}
	var idleSince time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ls.exited: // postgres died
			shutdown(nil)
			return 1
		case <-stopSignals:
			shutdown(nil)
			return 0
		case <-tick.C:
		}
		if !sameFile(usersPath, users) { // the directory was removed under the server
			shutdown(nil)
			return 1
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
		if err := syscall.Flock(int(users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = lock.Close()
			idleSince = time.Time{}
			continue
		}
		shutdown(lock)
		return 0
	}
}

// unused reports whether no process holds a lease on users.
func unused(users *os.File) bool {
	fd := int(users.Fd())
	if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	_ = syscall.Flock(fd, syscall.LOCK_UN)
	return true
}

// sameFile reports whether path still names the open file f.
func sameFile(path string, f *os.File) bool {
	a, err1 := os.Stat(path)
	b, err2 := f.Stat()
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// closeInheritedFiles closes the descriptors above 3 that lack close-on-exec.
func closeInheritedFiles() {
	var lim unix.Rlimit
	limit := 1024
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 1<<16 {
		limit = int(lim.Cur)
	} else if lim.Cur >= 1<<16 {
		limit = 1 << 16
	}
	for fd := 4; fd < limit; fd++ {
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			_ = unix.Close(fd)
		}
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
		return 0, fmt.Errorf("dbtest: %s=%q: want a duration such as 5s or 1h", EnvServerIdle, v)
	}
	return d, nil
}

// writeState writes <base>.json atomically, readable by its owner only.
func writeState(base string, st sharedState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", base, os.Getpid())
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, base+".json"); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// removeStateOf removes <base>.json if it still describes st (a process
// that found this server dead may have started another since).
func removeStateOf(base string, st sharedState) {
	if cur, err := readState(base); err == nil && cur == st {
		_ = os.Remove(base + ".json")
	}
}

// flockFile opens (creating) path and takes the flock how; without
// LOCK_NB it waits, polling, until it gets it or ctx ends. Closing the file
// releases the lock; so does the end of the process.
func flockFile(ctx context.Context, path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || how&syscall.LOCK_NB != 0 {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
