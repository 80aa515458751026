// Package issuer is the one minting core: every front door (TokenRequest,
// VNC, user tokens) turns its request into an issuer.Request, and Mint signs
// the token and records it durably before handing it out.
package issuer
