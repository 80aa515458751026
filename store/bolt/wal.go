package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// recordLog is the write-ahead log in front of the B+tree, as etcd keeps a
// WAL in front of its bbolt file: a new record is acknowledged once it is
// in the log (one write and one fdatasync a group of records), and reaches
// the bbolt file in a later, larger commit. The file remembers the index
// of the last entry it holds (metaLogApplied); opening replays the entries
// after it.
//
// The log holds little more than what the file does not: it is a segment
// file preallocated to segmentBytes (so that an append changes no file
// size, and an fdatasync writes no metadata), and once the file holds
// every entry of a segment more than rotateBytes long, the log starts a
// new one and removes the old. Opening reads at most about a segment,
// whatever the store holds. (etcd's own WAL package reads every segment it
// keeps, 64 MB each, at every open: a start-up that grows with the writes
// before it.)
//
// An entry is a frame: its length and CRC-32C (4 bytes each), its index
// (8 bytes), then the record's JSON. A frame torn by a crash fails its
// CRC; it was never acknowledged, and the log ends before it.
type recordLog struct {
	dir  string
	f    *os.File // the segment appended to
	off  int64    // where its next frame goes
	last uint64   // index of the last entry appended
	old  []string // segments before f, removed once the file holds all of the log
	buf  []byte
}

// logEntry is one entry read back from the log.
type logEntry struct {
	index uint64
	data  []byte
}

const (
	segmentBytes = 4 << 20
	rotateBytes  = 3 << 20
	frameHeader  = 16
	logSuffix    = ".log"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errLogGap is a log whose entries after the file's do not follow on.
var errLogGap = errors.New("bolt: log entries missing")

// openRecordLog opens the log in dir (creating it for a file that holds
// entries up to applied) and returns the entries after applied. Appends go
// to a new segment: a torn frame at the end of the last one is never
// written after.
func openRecordLog(dir string, applied uint64) (*recordLog, []logEntry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("bolt: log: %w", err)
	}
	names, err := segments(dir)
	if err != nil {
		return nil, nil, err
	}
	l := &recordLog{dir: dir, last: applied}
	var after []logEntry
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("bolt: log: %w", err)
		}
		for off := 0; ; {
			e, size, ok := readFrame(data[off:])
			if !ok {
				break
			}
			off += size
			if e.index <= applied {
				continue
			}
			if e.index != l.last+1 {
				return nil, nil, fmt.Errorf("%w: %s holds entry %d after %d", errLogGap, name, e.index, l.last)
			}
			after = append(after, e)
			l.last = e.index
		}
	}
	if err := l.startSegment(); err != nil {
		return nil, nil, err
	}
	current := filepath.Base(l.f.Name())
	for _, name := range names {
		if name != current {
			l.old = append(l.old, name)
		}
	}
	return l, after, nil
}

// logExists reports whether dir holds a segment.
func logExists(dir string) bool {
	names, err := segments(dir)
	return err == nil && len(names) > 0
}

// segments lists dir's segment files, oldest first.
func segments(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bolt: log: %w", err)
	}
	var names []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), logSuffix) {
			names = append(names, de.Name())
		}
	}
	slices.Sort(names) // fixed-width hex: name order is index order
	return names, nil
}

// readFrame reads the frame at the start of b; ok is false at the log's
// end: zeros, a frame cut short, or one whose CRC fails.
func readFrame(b []byte) (e logEntry, size int, ok bool) {
	if len(b) < frameHeader {
		return logEntry{}, 0, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n == 0 || n > len(b)-frameHeader {
		return logEntry{}, 0, false
	}
	data := b[frameHeader : frameHeader+n]
	if crc32.Checksum(b[8:frameHeader+n], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return logEntry{}, 0, false
	}
	return logEntry{index: binary.LittleEndian.Uint64(b[8:]), data: data}, frameHeader + n, true
}

// startSegment makes a new segment for the entries after l.last, durable
// before anything is appended to it.
func (l *recordLog) startSegment() error {
	path := filepath.Join(l.dir, fmt.Sprintf("%016x%s", l.last+1, logSuffix))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("bolt: log: %w", err)
	}
	// The first append's fdatasync makes the allocated size durable
	// with it; the directory entry needs its own sync.
	err = fileutil.Preallocate(f, segmentBytes, true)
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("bolt: log: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.off = f, 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// append logs one entry for each datum and syncs them; it returns the index
// of the last.
func (l *recordLog) append(data [][]byte) (uint64, error) {
	buf := l.buf[:0]
	index := l.last
	for _, d := range data {
		index++
		at := len(buf)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(d)))
		buf = append(buf, 0, 0, 0, 0)
		buf = binary.LittleEndian.AppendUint64(buf, index)
		buf = append(buf, d...)
		binary.LittleEndian.PutUint32(buf[at+4:], crc32.Checksum(buf[at+8:], castagnoli))
	}
	l.buf = buf
	if _, err := l.f.WriteAt(buf, l.off); err != nil {
		return 0, fmt.Errorf("bolt: append to log: %w", err)
	}
	if err := fileutil.Fdatasync(l.f); err != nil {
		return 0, fmt.Errorf("bolt: sync log: %w", err)
	}
	l.off += int64(len(buf))
	l.last = index
	return index, nil
}

// markApplied is told that the bbolt file holds every entry appended so
// far: the old segments go, and a segment grown past rotateBytes is
// replaced by a new one.
func (l *recordLog) markApplied() error {
	if l.off >= rotateBytes {
		current := filepath.Base(l.f.Name())
		if err := l.startSegment(); err != nil {
			return err
		}
		l.old = append(l.old, current)
	}
	for len(l.old) > 0 {
		if err := os.Remove(filepath.Join(l.dir, l.old[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bolt: log: %w", err)
		}
		l.old = l.old[1:]
	}
	return nil
}

func (l *recordLog) close() error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
