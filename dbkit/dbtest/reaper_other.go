//go:build !unix || solaris

package dbtest

// startReaper does nothing where dbtest has no reaper process: a container
// whose test process ends without stopping it stays, unless Ryuk runs.
func startReaper(string) error { return nil }

// ryukDisabled is only consulted where a reaper can be started.
func ryukDisabled() bool { return false }
