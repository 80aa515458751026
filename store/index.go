package store

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// The record indexes both backends keep, as keys within an index: a key
// names the record's jti last, so a range of keys is a range of records.
// Subjects are base64url-encoded so that any username fits a key; kinds,
// key ids and jtis contain no '/'.
const (
	// IndexSubject orders records by kind, then subject.
	IndexSubject = "subject"
	// IndexKey orders records by the key that signed them.
	IndexKey = "kid"
	// IndexAll is the records themselves, by jti.
	IndexAll = "all"
)

// IndexEntries are the keys of r in each index but IndexAll.
func IndexEntries(r *Record) map[string]string {
	return map[string]string{
		IndexSubject: SubjectPrefix(r.Kind, r.Subject) + r.JTI,
		IndexKey:     r.KeyID + "/" + r.JTI,
	}
}

// SubjectPrefix is the key prefix in IndexSubject of the records of kind
// and subject (of every subject of kind when subject is empty).
func SubjectPrefix(kind Kind, subject string) string {
	if subject == "" {
		return string(kind) + "/"
	}
	return string(kind) + "/" + base64.RawURLEncoding.EncodeToString([]byte(subject)) + "/"
}

// Range is the part of an index a listing reads: the keys that start with
// Prefix, after After (exclusive; "" from the start).
type Range struct {
	Index  string
	Prefix string
	After  string
}

// Range is the index range o reads, resuming after o.Continue.
func (o ListOptions) Range() (Range, error) {
	var r Range
	switch {
	case o.KeyID != "":
		r = Range{Index: IndexKey, Prefix: o.KeyID + "/"}
	case o.Kind != "":
		r = Range{Index: IndexSubject, Prefix: SubjectPrefix(o.Kind, o.Subject)}
	default:
		r = Range{Index: IndexAll}
	}
	if o.Continue != "" {
		after, err := base64.RawURLEncoding.DecodeString(o.Continue)
		if err != nil || !strings.HasPrefix(string(after), r.Index+":"+r.Prefix) {
			return Range{}, fmt.Errorf("%w: it was made by another listing", ErrInvalidContinue)
		}
		r.After = strings.TrimPrefix(string(after), r.Index+":")
	}
	return r, nil
}

// JTI is the jti an index key names.
func (r Range) JTI(key string) string {
	if r.Index == IndexAll {
		return key
	}
	return key[strings.LastIndexByte(key, '/')+1:]
}

// Continue is the token that resumes r after key.
func (r Range) Continue(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(r.Index + ":" + key))
}

// Page collects one listing's page: it keeps the records that match o up
// to o.Limit and says when to stop reading.
type Page struct {
	opts  ListOptions
	rng   Range
	list  RecordList
	count int64
	last  string
}

// NewPage starts a page of o reading rng.
func NewPage(o ListOptions, rng Range) *Page {
	return &Page{opts: o, rng: rng}
}

// Add offers the record stored under index key (nil when the index names
// a record that is gone); it reports whether to read on.
func (p *Page) Add(key string, r *Record) bool {
	if p.opts.Limit > 0 && p.count == p.opts.Limit {
		// One more record exists: the page ends before it.
		p.list.Continue = p.rng.Continue(p.last)
		return false
	}
	p.last = key
	if r == nil || !p.opts.Matches(r) {
		return true
	}
	p.list.Items = append(p.list.Items, r)
	p.count++
	return true
}

// List is the page read.
func (p *Page) List() *RecordList { return &p.list }
