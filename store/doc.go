// Package store defines the revocation and TTL store: the exact, durable truth
// about every token Portcullis minted (by jti, never by value) and every
// revocation. Backends live in subpackages and all pass store/storetest.
package store
