package dbtest

import "syscall"

// setDeathSignal makes the kernel stop postgres (immediate shutdown) if the
// test process dies without stopping it, for example on a test timeout.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGQUIT }
