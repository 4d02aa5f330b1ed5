//go:build unix && !solaris

package dbtest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A symlink put where dbtest writes a file or a log, in a directory the
// servers' user can write to, is not followed: the file it points to is
// left as it was, and so is its owner.
func TestWritesDoNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "planted")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534} // nobody
	}
	if err := writeFileAs(link, []byte("secret\n"), 0o600, cred); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("writeFileAs through a symlink: %v, want ELOOP", err)
	}
	for _, flag := range []int{os.O_APPEND, os.O_TRUNC} {
		if f, err := openLog(link, flag, 0o600); !errors.Is(err, syscall.ELOOP) {
			if f != nil {
				_ = f.Close()
			}
			t.Errorf("openLog through a symlink: %v, want ELOOP", err)
		}
	}
	after, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "root's own\n" || after.Sys().(*syscall.Stat_t).Uid != before.Sys().(*syscall.Stat_t).Uid {
		t.Errorf("the symlink's target changed: %q, owner %d", got, after.Sys().(*syscall.Stat_t).Uid)
	}

	// A file that is not a symlink is written, and given to cred's user.
	file := filepath.Join(dir, "pwfile")
	if err := writeFileAs(file, []byte("secret\n"), 0o600, cred); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file); string(got) != "secret\n" || st.Mode().Perm() != 0o600 {
		t.Errorf("wrote %q, mode %v", got, st.Mode().Perm())
	}
	if cred != nil && st.Sys().(*syscall.Stat_t).Uid != cred.Uid {
		t.Errorf("owner %d, want %d", st.Sys().(*syscall.Stat_t).Uid, cred.Uid)
	}
}
