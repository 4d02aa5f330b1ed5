//go:build unix && !solaris

package dbtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// envReaper names the container a reaper process removes: dbtest re-runs
// the test binary as one, with the variable set and a pipe as fd 3.
const envReaper = "DBKIT_DBTEST_REAPER"

// init turns the process into a reaper when, and only when, dbtest started
// it as one (the variable set and the pipe open as fd 3); otherwise it does
// nothing.
func init() {
	if id := os.Getenv(envReaper); id != "" && isPipe(3) {
		os.Exit(runReaper(id))
	}
}

// ryukDisabled reports Testcontainers' reaper (Ryuk) turned off, as where
// its image cannot be pulled: then no one removes a container whose test
// process ended without stopping it, unless dbtest does. It is
// Testcontainers' own reading (TESTCONTAINERS_RYUK_DISABLED, or
// ryuk.disabled in ~/.testcontainers.properties).
func ryukDisabled() bool { return testcontainers.ReadConfig().Config.RyukDisabled }

// startReaper starts a process that removes the container id when this
// process ends, however it ends: it holds the read end of a pipe whose
// write end this process keeps open (and never closes) until it exits. It
// is started only with Ryuk off; its failure to start is returned.
func startReaper(id string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{"dbkit-dbtest-reaper", "-test.run=^$"},       // a name for ps
		Env:         append(absolutePaths(os.Environ()), envReaper+"="+id), // it runs in /
		Dir:         "/",
		ExtraFiles:  []*os.File{r}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		_ = w.Close()
		return err
	}
	go func() { _ = cmd.Wait() }()
	reaperMu.Lock()
	reaperPipes = append(reaperPipes, w) // open until the process ends
	reaperMu.Unlock()
	return nil
}

// reaperPipes are the write ends of the reapers' pipes: kept, so that they
// close only when the process ends. Tests may start containers at once.
var (
	reaperMu    sync.Mutex
	reaperPipes []*os.File
)

// runReaper waits for its parent to end (its pipe at EOF), then removes
// the container id, gone already or not.
func runReaper(id string) int {
	// As the shared server's watchdog does: descriptors the test process
	// inherited without close-on-exec (a CI script's pipe, make's
	// jobserver) must not be held open after it ends.
	closeInheritedFiles()
	_, _ = io.Copy(io.Discard, os.NewFile(3, "parent"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbtest reaper:", err)
		return 1
	}
	defer func() { _ = cli.Close() }()
	// An error is most often a container its test stopped and removed
	// already: nothing is left to do either way.
	_, _ = cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	return 0
}
