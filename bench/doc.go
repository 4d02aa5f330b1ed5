// Package bench compares dbkit with its Go peers on one server, in one
// run: raw pgx (the limit), bare GORM, bun, and dbkit. It is a module of
// its own so that the SDK's go.mod does not carry bun, which dbkit does not
// use. make bench runs it; docs/performance.md records it.
package bench
