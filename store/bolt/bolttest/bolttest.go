// Package bolttest opens real bbolt stores for the tests of other packages.
package bolttest

import (
	"path/filepath"
	"testing"
	"time"

	"portcullis.dev/portcullis/store/bolt"
)

// Open opens a new bbolt store in a temporary directory; it is closed when
// the test ends.
func Open(tb testing.TB) *bolt.Store {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "portcullis.db"), time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
