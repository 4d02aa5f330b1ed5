//go:build unix && !linux

package dbtest

import "syscall"

// setDeathSignal has no portable equivalent outside Linux: a killed test
// process leaves its server running until the next StartLocal finds its
// directory stale.
func setDeathSignal(*syscall.SysProcAttr) {}

// memoryDir is "" outside Linux: servers go to the temporary directory.
func memoryDir() string { return "" }

// maxConnections of a local server: PostgreSQL's default, which the System V
// semaphore limits of macOS and the BSDs allow.
const maxConnections = 100

// childProcesses is nil outside Linux: there is no /proc to list them.
func childProcesses(int) []int { return nil }

// processRunning reports whether pid is a process.
func processRunning(pid int) bool { return processAlive(pid) }

// processIn reports whether pid runs: outside Linux there is no /proc to
// tell its working directory.
func processIn(pid int, _ string) bool { return processRunning(pid) }

// removeSharedMemory does nothing outside Linux.
func removeSharedMemory(int, int) {}
