package bolt

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

func appendEntries(t *testing.T, l *recordLog, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := l.append([][]byte{fmt.Appendf(nil, "entry %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func checkEntries(t *testing.T, got []logEntry, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("%d entries read back, want %d (%d to %d)", len(got), to-from+1, from, to)
	}
	for i, e := range got {
		if want := fmt.Sprintf("entry %d", from+i); e.index != uint64(from+i) || string(e.data) != want {
			t.Fatalf("entry %d = %d %q, want %d %q", i, e.index, e.data, from+i, want)
		}
	}
}

// TestLogEndsBeforeATornFrame: a crash in the middle of an append leaves a
// frame cut short. The log ends before it, the entries before it are read
// back, and appends go on after them (in a new segment).
func TestLogEndsBeforeATornFrame(t *testing.T) {
	dir := t.TempDir()
	l, got, err := openRecordLog(dir, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("new log: %v, %d entries", err, len(got))
	}
	appendEntries(t, l, 1, 5)
	torn := l.off
	appendEntries(t, l, 6, 6)
	path := l.f.Name()
	l.close()
	// Tear entry 6: its last bytes never reached the disk.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0, 0, 0}, torn+frameHeader+4); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l, got, err = openRecordLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, 1, 5)
	appendEntries(t, l, 6, 8)
	l.close()
	l, got, err = openRecordLog(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	checkEntries(t, got, 3, 8)
}

// TestLogStartsOverOnceTheFileHoldsIt: past rotateBytes, a log whose
// entries the file holds moves to a new segment and removes the old, so
// an open reads only what came after.
func TestLogStartsOverOnceTheFileHoldsIt(t *testing.T) {
	dir := t.TempDir()
	l, _, err := openRecordLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<10)
	n := 0
	for l.off < rotateBytes {
		n++
		if _, err := l.append([][]byte{big}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.markApplied(); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, n+1, n+2)
	l.close()
	names, err := segments(dir)
	if err != nil || len(names) != 1 || names[0] != fmt.Sprintf("%016x.log", n+1) {
		t.Fatalf("segments after the rotation: %v, %v; want one starting at %d", names, err, n+1)
	}
	l, got, err := openRecordLog(dir, uint64(n))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	checkEntries(t, got, n+1, n+2)
}

// TestLogWithEntriesMissingIsRefused: entries after the file's that do not
// follow on (a segment lost) fail the open rather than replay a store with
// a hole in it.
func TestLogWithEntriesMissingIsRefused(t *testing.T) {
	dir := t.TempDir()
	l, _, err := openRecordLog(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 1, 3)
	// A later segment whose entries start at 6: 4 and 5 are gone.
	l.last = 5
	if err := l.startSegment(); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 6, 6)
	l.close()
	if _, _, err := openRecordLog(dir, 0); !errors.Is(err, errLogGap) {
		t.Fatalf("open with entries 4 and 5 missing = %v, want %v", err, errLogGap)
	}
	// A file that holds up to 5 needs nothing the log lost.
	l, got, err := openRecordLog(dir, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	checkEntries(t, got, 6, 6)
}
