//go:build unix && !solaris

package dbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbkit-go/database/dbkit"
)

// localServer is a postgres process run from the local binaries in a
// temporary directory.
type localServer struct {
	dir      string // temporary directory: data/, the socket, postgres.log
	port     int
	password string   // the superuser's
	owner    *os.File // holds owner.lock while the server is this process's
	args     []string // settings given to postgres after dbtest's own
	postgres string   // the binary, to start it again
	cred     *syscall.Credential
	child    // the postgres process
}

// StartLocal runs initdb and postgres from the local PostgreSQL installation
// in a new directory under DBKIT_PG_TMPDIR, else /dev/shm where it is a
// tmpfs with room (cloning a database there costs a tenth of what a disk
// may take), else the temporary directory. The server listens on 127.0.0.1
// on a free port, with durability off (fsync, synchronous_commit,
// full_page_writes) since the data is thrown away. When the process runs as
// root the server runs as the "postgres" system user, as PostgreSQL refuses
// root. It is the test process's own: [Shared] gives one to all the test
// processes of a run.
//
// The binaries are looked up in DBKIT_PG_BIN, then on PATH, then in the
// usual installation directories (/usr/lib/postgresql/*/bin and others).
// Connections over TCP use SCRAM password authentication; the Unix socket in
// the server's directory trusts local users, for psql.
func StartLocal(ctx context.Context) (*Server, error) {
	s, _, err := startLocal(ctx)
	return s, err
}

// startLocal is StartLocal, also returning the server's process and
// directory.
func startLocal(ctx context.Context) (*Server, *localServer, error) {
	return startLocalWith(ctx, localSetup{})
}

// localSetup changes what startLocalWith starts.
type localSetup struct {
	// fill creates ls.dir/data and sets ls.password; nil runs initdb with a
	// new password. postgres is the path of the server binary.
	fill func(ctx context.Context, ls *localServer, postgres string, cred *syscall.Credential) error
	// args are settings given to postgres after dbtest's own ("-c", "k=v").
	args []string
}

// startLocalWith is startLocal with the data directory and settings of
// setup.
func startLocalWith(ctx context.Context, setup localSetup) (*Server, *localServer, error) {
	removeStaleDirs()
	initdb, postgres, err := findBinaries()
	if err != nil {
		return nil, nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, nil, err
	}
	dir, owner, err := ownedDir(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	ls := &localServer{dir: dir, owner: owner, args: setup.args, postgres: postgres, cred: cred}
	cleanup := func() {
		_ = os.RemoveAll(dir)
		_ = owner.Close()
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("dbtest: %w", err)
		}
	}
	if setup.fill != nil {
		err = setup.fill(ctx, ls, postgres, cred)
	} else {
		ls.password = randomHex(16)
		err = ls.initdb(ctx, initdb, cred, ls.password)
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}

	var port int
	for attempt := 1; ; attempt++ {
		port, err = freePort()
		if err == nil {
			err = ls.start(ctx, postgres, cred, port)
		}
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			cleanup()
			return nil, nil, err
		}
	}

	ls.port = port
	s := ls.server(ls.stop)
	if err := s.connectAdmin(ctx); err != nil {
		_ = ls.stop(context.Background())
		return nil, nil, err
	}
	return s, ls, nil
}

// server returns a Server for ls, stopped by stop.
func (ls *localServer) server(stop func(context.Context) error) *Server {
	return &Server{
		source: SourceLocal,
		admin: dbkit.Config{
			Host: "127.0.0.1", Port: ls.port, Database: "postgres", User: "postgres",
			Password: ls.password, SSLMode: "disable", ApplicationName: "dbtest",
		},
		stop: stop,
		hint: func(db string) string {
			return fmt.Sprintf("psql -h %s -p %d -U postgres %s (while the server runs)", ls.dir, ls.port, db)
		},
	}
}

func (ls *localServer) initdb(ctx context.Context, bin string, cred *syscall.Credential, password string) error {
	pwfile := filepath.Join(ls.dir, "pwfile")
	if err := writeFileAs(pwfile, []byte(password+"\n"), 0o600, cred); err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = os.Remove(pwfile) }()
	cmd := exec.CommandContext(ctx, bin,
		"-D", filepath.Join(ls.dir, "data"),
		"-U", "postgres", "--pwfile="+pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	setDeathSignal(cmd.SysProcAttr)
	cmd.Dir = ls.dir
	cmd.Env = serverEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dbtest: initdb: %w\n%s", err, tail(out, 20))
	}
	return nil
}

// start runs postgres on port and waits until it accepts connections.
func (ls *localServer) start(ctx context.Context, bin string, cred *syscall.Credential, port int) error {
	logPath := filepath.Join(ls.dir, "postgres.log")
	// Appended to: a server started again keeps the log of its last run.
	logFile, err := openLog(logPath, os.O_APPEND, 0o666)
	if err != nil {
		return fmt.Errorf("dbtest: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(bin,
		"-D", filepath.Join(ls.dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+ls.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// Every test process of a run shares the server, each with its
		// tests' pools and an admin pool of 8.
		"-c", "max_connections="+strconv.Itoa(maxConnections),
		// Shared memory segments in the data directory go with it, even
		// when postgres is killed (in /dev/shm they would outlive it).
		"-c", "dynamic_shared_memory_type=mmap",
	)
	cmd.Args = append(cmd.Args, ls.args...)
	ls.stopSignal = syscall.SIGINT // a fast shutdown, as terminate does
	if err := ls.child.start(cmd, ls.dir, cred, logFile); err != nil {
		return err
	}

	// Ready when a connection gets an answer that is not "starting up".
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2", ls.dir, port)
	log := func() string { b, _ := os.ReadFile(logPath); return tail(b, 20) }
	return ls.waitReady(ctx, 30*time.Second, "postgres", log, func() (bool, error) {
		conn, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			_ = conn.Close(ctx)
		}
		return err == nil, err
	})
}

// stop terminates postgres and removes its directory.
func (ls *localServer) stop(ctx context.Context) error {
	err := ls.terminate(ctx)
	if rmErr := os.RemoveAll(ls.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("dbtest: %w", rmErr)
	}
	if ls.owner != nil {
		_ = ls.owner.Close()
	}
	return err
}

// terminate shuts postgres down (fast shutdown: running sessions are ended)
// and kills it if it has not exited after 10 s or when ctx ends.
func (ls *localServer) terminate(ctx context.Context) error {
	return ls.child.terminate(ctx, syscall.SIGINT, 10*time.Second, "postgres")
}

// installDirs are where PostgreSQL's server binaries are usually installed.
var installDirs = []string{
	"/usr/lib/postgresql/*/bin",         // Debian, Ubuntu
	"/usr/pgsql-*/bin",                  // RHEL, Fedora (PGDG)
	"/opt/homebrew/opt/postgresql*/bin", // macOS, Homebrew on Apple silicon
	"/usr/local/opt/postgresql*/bin",    // macOS, Homebrew on Intel
	"/usr/local/pgsql/bin",              // built from source
}

// findBinaries returns the paths of initdb and postgres.
func findBinaries() (initdb, postgres string, err error) { return findBinariesIn(installDirs) }

func findBinariesIn(patterns []string) (initdb, postgres string, err error) {
	if d := os.Getenv(EnvPGBin); d != "" {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "postgres")
		if isExecutable(i) && isExecutable(p) {
			return i, p, nil
		}
		return "", "", fmt.Errorf("dbtest: %s=%q holds no initdb and postgres executables", EnvPGBin, d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if q, err := exec.LookPath("postgres"); err == nil {
			return p, q, nil
		}
	}
	var dirs []string
	for _, pattern := range patterns {
		matches, _ := filepath.Glob(pattern)
		slices.SortFunc(matches, compareVersionDirs)
		slices.Reverse(matches) // newest first
		dirs = append(dirs, matches...)
	}
	for _, d := range dirs {
		i, p := filepath.Join(d, "initdb"), filepath.Join(d, "postgres")
		if isExecutable(i) && isExecutable(p) {
			return i, p, nil
		}
	}
	return "", "", errors.New("no PostgreSQL server binaries (initdb, postgres) on PATH, in " + EnvPGBin +
		" or in /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql;" +
		" macOS: brew install postgresql), or set " + EnvDatabaseURL + " to an existing server")
}

// compareVersionDirs orders ".../9.6/bin" before ".../15/bin".
func compareVersionDirs(a, b string) int {
	va, vb := versionOf(a), versionOf(b)
	for i := 0; i < len(va) && i < len(vb); i++ {
		if va[i] != vb[i] {
			return va[i] - vb[i]
		}
	}
	return len(va) - len(vb)
}

func versionOf(path string) []int {
	var v []int
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r < '0' || r > '9' }) {
		n, _ := strconv.Atoi(part)
		v = append(v, n)
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// serverCredential returns nil when the process may run postgres as itself,
// and the "postgres" user's credential when it runs as root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root, and PostgreSQL refuses to run as root: " +
			"create a 'postgres' system user (installing the postgresql package does) or run the tests as another user")
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("dbtest: user postgres has a non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dbtest: find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverEnv is the environment of initdb and postgres: not the test
// process's, whose secrets (CI tokens, DBKIT_TEST_DATABASE_URL) any process
// of the postgres user could read in /proc, and whose PG* variables would
// change what they do.
func serverEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// serverParentDir is where local servers keep their data: DBKIT_PG_TMPDIR
// if set, else memory (/dev/shm) where it is a tmpfs with room, else the
// temporary directory.
func serverParentDir() string {
	if d := os.Getenv(EnvPGTmpDir); d != "" {
		if abs, err := filepath.Abs(d); err == nil {
			return abs // initdb runs in the server's directory: a relative path would break
		}
		return d
	}
	if d := memoryDir(); d != "" {
		return d
	}
	return os.TempDir()
}

// staleDirPrefix starts the names of the directories removeStaleDirs
// sweeps.
const staleDirPrefix = "dbkit-pg-"

// ownedDir creates a directory under serverParentDir named
// dbkit-pg-<kind><random> and takes its owner.lock, which this process holds
// until it closes the returned file or ends: [removeStaleDirs] removes the
// directory once the lock is free, whether or not what ran there still
// runs, so that a test process killed before its cleanup leaves nothing.
func ownedDir(ctx context.Context, kind string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(serverParentDir(), staleDirPrefix+kind)
	if err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	owner, err := flockFile(ctx, filepath.Join(dir, "owner.lock"), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	return dir, owner, nil
}

// removeStaleDirs removes the directories of local servers (and PgBouncers)
// whose owner is gone (a test binary or watchdog killed before it could stop
// its server).
// Where the kernel did not stop such a server with its owner (outside
// Linux), postgres shuts itself down within a minute of its directory going.
func removeStaleDirs() {
	var dirs []string
	for _, parent := range []string{os.TempDir(), memoryDir(), serverParentDir()} {
		if parent != "" {
			found, _ := filepath.Glob(filepath.Join(parent, staleDirPrefix+"*"))
			dirs = append(dirs, found...)
		}
	}
	for _, dir := range slices.Compact(slices.Sorted(slices.Values(dirs))) {
		fi, err := os.Stat(dir)
		if err != nil || time.Since(fi.ModTime()) < 10*time.Second {
			continue // may be starting, its lock not taken yet
		}
		if staleServerDir(dir) {
			_ = os.RemoveAll(dir)
		}
	}
}

// ownerLock reports whether a process holds dir's owner.lock; the error
// says the lock could not be opened (there is none, or it is another
// user's).
func ownerLock(dir string) (held bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "owner.lock"), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	return errors.Is(syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB), syscall.EWOULDBLOCK), nil
}

// ownerAlive reports whether a process holds dir's owner.lock.
func ownerAlive(dir string) bool {
	held, _ := ownerLock(dir)
	return held
}

// staleServerDir reports whether the server directory dir is nobody's: its
// owner.lock is free, or it has none (a server of an older dbtest) and the
// postgres of its postmaster.pid is gone. A directory of another user's is
// never stale.
func staleServerDir(dir string) bool {
	held, err := ownerLock(dir)
	if err == nil {
		return !held
	}
	if !errors.Is(err, os.ErrNotExist) {
		return false
	}
	pm, err := readPostmasterFile(filepath.Join(dir, "data"))
	if err != nil {
		return !errors.Is(err, os.ErrPermission) // missing or unreadable as text: stale
	}
	return !processAlive(pm.pid)
}

// postmasterFile is what a data directory's postmaster.pid says.
type postmasterFile struct {
	dataDir       string
	pid           int
	shmKey, shmID int // its System V shared memory segment; shmKey 0 if not named
}

// readPostmasterFile reads dataDir/postmaster.pid: the postmaster's pid on
// its first line, its shared memory segment's key and id on its seventh.
func readPostmasterFile(dataDir string) (postmasterFile, error) {
	pm := postmasterFile{dataDir: dataDir}
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pm, err
	}
	lines := strings.Split(string(b), "\n")
	if pm.pid, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil {
		return pm, fmt.Errorf("postmaster.pid starts with %q", lines[0])
	}
	if len(lines) > 6 {
		if f := strings.Fields(lines[6]); len(f) == 2 {
			key, err1 := strconv.Atoi(f[0])
			id, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				pm.shmKey, pm.shmID = key, id
			}
		}
	}
	return pm, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
