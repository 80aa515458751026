//go:build linux

package lazyfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// mount mounts a lazy filesystem for the test. It needs /dev/fuse and the
// right to mount, which this project's test machines have.
func mount(t *testing.T) (*FS, string) {
	t.Helper()
	backing, dir := t.TempDir(), t.TempDir()
	l, err := Mount(backing, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Unmount() })
	return l, backing
}

// TestCrashDropsExactlyTheUnsyncedWrites: what was fsynced survives a
// crash, byte for byte; what was written after it does not.
func TestCrashDropsExactlyTheUnsyncedWrites(t *testing.T) {
	l, backing := mount(t)
	f, err := os.OpenFile(filepath.Join(l.Dir, "db"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	synced := bytes.Repeat([]byte("A"), 8192)
	if _, err := f.WriteAt(synced, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Unsynced: an overwrite inside the file, growth past its end, and a
	// truncate.
	if _, err := f.WriteAt([]byte("BBBB"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("C"), 4096), 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(9000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := l.Unsynced(); n != 3 {
		t.Fatalf("%d unsynced changes, want 3", n)
	}
	other, err := os.OpenFile(filepath.Join(l.Dir, "never-synced"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	other.WriteString("gone")
	other.Close()

	if err := l.Crash(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(backing, "db"))
	if err != nil || !bytes.Equal(got, synced) {
		t.Fatalf("after the crash the file has %d bytes (%q…), want the %d synced bytes", len(got), got[:min(len(got), 104)], len(synced))
	}
	if got, _ := os.ReadFile(filepath.Join(backing, "never-synced")); len(got) != 0 {
		t.Fatalf("a never-synced file kept %q", got)
	}
}

// TestCrashFollowsRenamesAndSkipsDeletes: a rename and a delete are durable
// at once; a crash undoes unsynced writes at the file's new path (its
// directory renamed) and passes over a file that is gone.
func TestCrashFollowsRenamesAndSkipsDeletes(t *testing.T) {
	l, backing := mount(t)
	if err := os.Mkdir(filepath.Join(l.Dir, "d.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, data string, sync bool) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(filepath.Join(l.Dir, "d.tmp", "seg"), "synced", true)
	write(filepath.Join(l.Dir, "d.tmp", "seg"), "+lost", false)
	write(filepath.Join(l.Dir, "old"), "unsynced, then deleted", false)
	if err := os.Rename(filepath.Join(l.Dir, "d.tmp"), filepath.Join(l.Dir, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(l.Dir, "old")); err != nil {
		t.Fatal(err)
	}
	if err := l.Crash(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(backing, "d", "seg")); err != nil || string(got) != "synced" {
		t.Fatalf("the renamed file after the crash: %q, %v; want only its synced bytes", got, err)
	}
}
