//go:build unix && !solaris

package dbtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// child is a server process the test process started (postgres,
// pgbouncer), tied to the test process's life.
type child struct {
	// stopSignal stops it when it failed to start: SIGKILL unless set.
	// postgres takes SIGINT (a fast shutdown): a postmaster killed outright
	// leaves its children on its shared memory, and the next start on the
	// same directory (a retry, a standby's restart) is refused.
	stopSignal os.Signal
	cmd        *exec.Cmd
	exited     chan struct{} // closed once it has exited
	waitErr    error         // how it exited, once exited is closed
}

// start runs cmd in dir as cred's user (nil: as this process), with the
// server environment (serverEnv) and its output in logFile. On Linux the
// kernel stops it if the test process dies without stopping it.
func (c *child) start(cmd *exec.Cmd, dir string, cred *syscall.Credential, logFile *os.File) error {
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	setDeathSignal(cmd.SysProcAttr)
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// The kernel sends the death signal when the thread that started
		// the process exits, not the process, and Go ends a thread when a
		// goroutine locked to it returns: keep this thread until the
		// process exits, so that no other goroutine can lock it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("dbtest: start %s: %w", cmd.Path, err)
	}
	c.cmd, c.exited = cmd, exited
	return nil
}

// terminate sends sig and kills the process if it has not exited after
// grace or when ctx ends. name names it in errors.
func (c *child) terminate(ctx context.Context, sig os.Signal, grace time.Duration, name string) error {
	if c.cmd == nil || c.cmd.Process == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.exited:
		return nil
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("dbtest: %s did not stop within %s and was killed", name, grace)
	case <-ctx.Done():
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("dbtest: stopping %s: %w", name, ctx.Err())
	}
}

// stopAfterFailedStart stops a process that did not become ready, with its
// stopSignal (a second's grace for SIGKILL, ten for another).
func (c *child) stopAfterFailedStart(name string) {
	sig, grace := c.stopSignal, 10*time.Second
	if sig == nil {
		sig, grace = syscall.SIGKILL, time.Second
	}
	_ = c.terminate(context.Background(), sig, grace, name)
}

// waitReady calls try every 20 ms until it is done, the process exits, ctx
// ends or timeout passes. try is done when the process is ready (err nil)
// or will never be (err says why); else err is why it is not ready yet.
// The process is stopped on every failure but its own exit. Errors quote
// the end of the process's log, from log.
func (c *child) waitReady(ctx context.Context, timeout time.Duration, name string, log func() string, try func() (done bool, err error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := try()
		if done && err == nil {
			return nil
		}
		last = err
		if done {
			c.stopAfterFailedStart(name)
			return fmt.Errorf("dbtest: %s: %w\n%s", name, err, log())
		}
		select {
		case <-c.exited:
			return fmt.Errorf("dbtest: %s exited at start (%v):\n%s", name, c.waitErr, log())
		case <-ctx.Done():
			c.stopAfterFailedStart(name)
			return fmt.Errorf("dbtest: waiting for %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stopAfterFailedStart(name)
			return fmt.Errorf("dbtest: %s did not accept connections within %s (last error: %v):\n%s", name, timeout, last, log())
		}
	}
}
