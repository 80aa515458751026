// Package keys holds Portcullis' signing key ring: it generates, loads and
// stores the keys that sign tokens, and answers which key signs and which keys
// verify.
package keys
