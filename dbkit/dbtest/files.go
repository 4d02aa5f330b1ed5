//go:build unix && !solaris

package dbtest

import (
	"errors"
	"os"
	"syscall"
)

// writeFileAs writes content to path and, with cred, gives the file to
// cred's user. path is in a directory the servers' user can write to,
// where a server running as that user could have put a symlink for root
// to write through or chown: writeFileAs does not follow one at path,
// and changes the owner on the open file, not by name again.
func writeFileAs(path string, content []byte, perm os.FileMode, cred *syscall.Credential) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if cred != nil {
		err = f.Chown(int(cred.Uid), int(cred.Gid))
	}
	if err == nil {
		_, err = f.Write(content)
	}
	return errors.Join(err, f.Close())
}

// openLog opens a server's log at path for writing, with flag
// (os.O_APPEND or os.O_TRUNC), not following a symlink there (see
// writeFileAs).
func openLog(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag|syscall.O_NOFOLLOW, perm)
}
