//go:build !unix || solaris

package dbtest

// startSharedLocal is StartLocal where local servers are not supported.
var startSharedLocal = StartLocal
