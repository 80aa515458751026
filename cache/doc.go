// Package cache is the cached view of the store that reviews read: ristretto
// holds verified tokens and records to save work, and an exact revocation
// index decides. ristretto may drop any Set, so it never holds the only copy
// of anything: a miss asks the store, and every hit is checked against the
// exact index.
package cache
