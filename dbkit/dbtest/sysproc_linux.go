package dbtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// childProcesses returns the pids of the processes whose parent is pid.
func childProcesses(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parent, _ := procStat(child); parent == pid {
			out = append(out, child)
		}
	}
	return out
}

// processRunning reports whether pid is a process that has not exited: a
// zombie (exited, not yet reaped, as an orphan in a container whose init
// does not reap) does not run.
func processRunning(pid int) bool {
	if !processAlive(pid) {
		return false
	}
	_, state := procStat(pid)
	return state != "Z"
}

// procStat returns the parent pid and state of a process from
// /proc/<pid>/stat; 0 and "" when it is gone.
func procStat(pid int) (ppid int, state string) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, ""
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(fields[1])
	return ppid, fields[0]
}

// processIn reports whether process pid works in dir or below it (its
// working directory): whether a pid read from a file in dir is still the
// process that wrote it, and not another that got the number since. A
// process that is gone, or whose directory cannot be read, is not.
func processIn(pid int, dir string) bool {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return cwd == dir || strings.HasPrefix(cwd, dir+"/")
}

// removeSharedMemory removes the System V shared memory segment id if it
// still has key and no process attached: what a postmaster killed with
// SIGKILL leaves behind (a normal or immediate shutdown removes its own),
// and what nothing reclaims once its data directory is gone.
func removeSharedMemory(key, id int) {
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil || uint32(ds.Perm.Key) != uint32(key) || ds.Nattch != 0 {
		return
	}
	_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
}
