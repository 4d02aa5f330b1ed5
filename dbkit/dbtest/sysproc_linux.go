package dbtest

import (
	"os"
	"syscall"
)

// setDeathSignal makes the kernel stop postgres (immediate shutdown) if the
// test process dies without stopping it, for example on a test timeout.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGQUIT }

// memoryDir is /dev/shm when it is a writable tmpfs with room for a server:
// a database cloned there costs 8 ms where a virtual disk may take 130 ms
// creating its few hundred files.
func memoryDir() string {
	const dir, tmpfsMagic, room = "/dev/shm", 0x01021994, 512 << 20
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Type != tmpfsMagic ||
		uint64(st.Bavail)*uint64(st.Bsize) < room || syscall.Access(dir, 2 /* W_OK */) != nil {
		return ""
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	return dir
}
