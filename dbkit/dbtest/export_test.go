package dbtest

// PatroniDir returns the directory of p's cluster, for tests that check it
// is gone.
func PatroniDir(p *Patroni) string { return p.dir }
