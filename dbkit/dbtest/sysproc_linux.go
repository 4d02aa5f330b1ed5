package dbtest

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setDeathSignal makes the kernel stop postgres (immediate shutdown) if the
// test process dies without stopping it, for example on a test timeout.
// The signal follows the thread that started postgres: see localServer.start.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGQUIT }

// memoryDir is /dev/shm when it is a writable tmpfs with room for a server:
// a database cloned there costs about 10 ms where a virtual disk may take
// 100 ms creating its few hundred files.
func memoryDir() string {
	const dir, room = "/dev/shm", 512 << 20
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC ||
		st.Bavail*uint64(st.Bsize) < room || unix.Access(dir, unix.W_OK) != nil {
		return ""
	}
	return dir
}

// maxConnections of a local server: every test process of a run shares it.
const maxConnections = 1000
