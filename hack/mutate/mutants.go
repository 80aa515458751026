package main

// mutant breaks one check: the single occurrence of from in file becomes to.
type mutant struct {
	name, file, from, to string
}

// The review path's checks, each broken on its own.
var mutants = []mutant{
	// Shape and size.
	{"verifier: empty token", "authn/verifier.go",
		`case token == "":`, `case false:`},
	{"verifier: size cap", "authn/verifier.go",
		`case len(token) > MaxTokenBytes:`, `case false:`},

	// Header.
	{"verifier: jku header", "authn/verifier.go", `h.JKU != nil ||`, `false ||`},
	{"verifier: x5u header", "authn/verifier.go", `h.X5U != nil ||`, `false ||`},
	{"verifier: jwk header", "authn/verifier.go", `h.JWK != nil ||`, `false ||`},
	{"verifier: x5c header", "authn/verifier.go", `h.X5C != nil ||`, `false ||`},
	{"verifier: crit header", "authn/verifier.go", `|| h.Crit != nil`, `|| false`},
	{"verifier: b64 header", "authn/verifier.go", `|| h.B64 != nil {`, `|| false {`},
	{"verifier: algorithm names match exactly", "authn/verifier.go",
		`if alg.String() == name {`, `if strings.EqualFold(alg.String(), name) {`},
	{"verifier: algorithm is the key's", "authn/verifier.go",
		`if key.Algorithm != alg {`, `if false {`},

	// Keys and signature.
	{"verifier: retired and unknown keys told apart", "authn/verifier.go",
		`if errors.Is(err, keys.ErrRetiredKey) {`, `if false {`},
	{"ring: retired keys refused", "keys/ring.go",
		"if k.State == StateRetired {\n\t\treturn nil, ErrRetiredKey", "if false {\n\t\treturn nil, ErrRetiredKey"},
	{"verifier: key retirement on cache hits", "authn/verifier.go",
		`if _, err := v.ring.VerificationKey(verified.KeyID); err != nil {`, `if _, err := v.ring.VerificationKey(verified.KeyID); err != nil && false {`},
	{"verifier: signature", "authn/verifier.go",
		"sig, key.RawPublic()); err != nil {", "sig, key.RawPublic()); err != nil && false {"},

	// Claims.
	{"verifier: issuer", "authn/verifier.go", `if p.Issuer != v.opts.Issuer {`, `if false {`},
	{"token: claims named once and exactly", "token/token.go",
		`if err := jsonv2.Unmarshal(payload, &c); err != nil {`, `if err := json.Unmarshal(payload, &c); err != nil && jsonv2.Unmarshal(payload, &c) != nil {`},
	{"verifier: sub present", "authn/verifier.go", `if p.Subject == "" ||`, `if false ||`},
	{"verifier: jti present", "authn/verifier.go", `|| p.ID == "" ||`, `|| false ||`},
	{"verifier: aud present", "authn/verifier.go", `|| len(p.Audience) == 0 {`, `|| false {`},
	{"verifier: audience intersection", "authn/verifier.go",
		"if len(res.Audiences) == 0 {\n\t\tres.Reason = ReasonAudience", "if false {\n\t\tres.Reason = ReasonAudience"},
	{"verifier: exp", "authn/verifier.go", `case now.After(t.Expiry.Add(leeway)):`, `case false:`},
	{"verifier: nbf", "authn/verifier.go", `case !t.NotBefore.IsZero() && now.Add(leeway).Before(t.NotBefore):`, `case false:`},
	{"verifier: iat", "authn/verifier.go", `case now.Add(leeway).Before(t.IssuedAt):`, `case false:`},
	{"verifier: leeway default", "authn/verifier.go", `opts.Leeway = DefaultLeeway`, `opts.Leeway = 0`},

	// Staleness and the store.
	{"verifier: staleness bound", "authn/verifier.go",
		`if err := v.state.Fresh(); err != nil {`, `if err := v.state.Fresh(); err != nil && false {`},
	{"serve: readyz staleness", "cmd/portcullis/app/serve.go",
		`func (s *Server) revocationsCurrent(*http.Request) error { return s.revocations.Fresh() }`,
		`func (s *Server) revocationsCurrent(*http.Request) error { return nil }`},
	{"revocation: watch progress proves the replica current", "revocation/watch.go",
		"if synced {\n\t\t\t\ta.lastSync.Store", "if synced && false {\n\t\t\t\ta.lastSync.Store"},
	{"verifier: record missing is a refusal", "authn/verifier.go",
		"if errors.Is(err, store.ErrNotFound) {\n\t\tres.Reason = ReasonRecordMissing", "if false {\n\t\tres.Reason = ReasonRecordMissing"},
	{"verifier: store error is undecided (503)", "authn/verifier.go",
		"if err != nil {\n\t\treturn res, fmt.Errorf(\"authn: record %s: %w\", verified.JTI, err)",
		"if err != nil {\n\t\tres.Reason = ReasonRecordMissing\n\t\treturn res, nil\n\t\treturn res, fmt.Errorf(\"authn: record %s: %w\", verified.JTI, err)"},
	{"verifier: record subject", "authn/verifier.go", `rec.Subject != verified.Subject ||`, `false ||`},
	{"verifier: record kid", "authn/verifier.go", `|| rec.KeyID != verified.KeyID {`, `|| false {`},
	{"verifier: record expiry", "authn/verifier.go", `if !now.Before(rec.ExpiresAt) {`, `if false {`},
	{"verifier: disabled", "authn/verifier.go", `if rec.User != nil && rec.User.Disabled {`, `if false {`},
	{"revocation: a cached user token keeps whether it is disabled", "revocation/records.go",
		"\t\tif r.User.Disabled {\n\t\t\tr.User = disabledUserToken", "\t\tif false {\n\t\t\tr.User = disabledUserToken"},
	{"revocation: this replica's deletion wins over its cached copy", "revocation/records.go",
		"\tif changed {\n\t\tif ch.record == nil {", "\tif changed && false {\n\t\tif ch.record == nil {"},

	// Revocations.
	{"verifier: revoked", "authn/verifier.go", `} else if revoked {`, `} else if revoked && false {`},
	{"revocation: record's own revocation mark", "revocation/authority.go",
		"if r.RevokedAt != nil {\n\t\treturn store.ScopeJTI, true, nil", "if false {\n\t\treturn store.ScopeJTI, true, nil"},
	{"revocation: jti index", "revocation/authority.go", `if _, ok := a.revoked[r.JTI]; ok {`, `if _, ok := a.revoked[r.JTI]; ok && false {`},
	{"revocation: subject marks", "revocation/authority.go", `if mark, ok := a.subjects[r.Subject]; ok && !r.IssuedAt.After(mark.at) {`, `if mark, ok := a.subjects[r.Subject]; ok && false && !r.IssuedAt.After(mark.at) {`},
	{"revocation: subject mark is inclusive", "revocation/authority.go", `ok && !r.IssuedAt.After(mark.at) {`, `ok && r.IssuedAt.Before(mark.at) {`},
	{"revocation: index loaded before deciding", "revocation/authority.go", "if !a.loaded {\n\t\treturn \"\", false, ErrNotLoaded", "if false {\n\t\treturn \"\", false, ErrNotLoaded"},

	// Bound objects.
	{"verifier: bound tokens refused where nothing can check", "authn/verifier.go",
		"if v.opts.Bindings == nil {\n\t\t\tres.Reason = ReasonBindingGone\n\t\t\treturn res, nil", "if v.opts.Bindings == nil {\n\t\t\tcontinue"},
	{"verifier: bound object gone", "authn/verifier.go", "case !ok:\n\t\t\tres.Reason = ReasonBindingGone", "case !ok && false:\n\t\t\tres.Reason = ReasonBindingGone"},
	{"verifier: bindings not synced is undecided", "authn/verifier.go",
		"case err != nil:\n\t\t\treturn res, fmt.Errorf(\"authn: bound object: %w\", err)", "case false:\n\t\t\treturn res, fmt.Errorf(\"authn: bound object: %w\", err)"},
	{"bindings: uid", "authn/bindings.go", `return string(m.GetUID()) == b.UID && m.GetDeletionTimestamp() == nil, nil`, `return m.GetDeletionTimestamp() == nil, nil`},
	{"bindings: being deleted", "authn/bindings.go", `return string(m.GetUID()) == b.UID && m.GetDeletionTimestamp() == nil, nil`, `return string(m.GetUID()) == b.UID, nil`},
	{"bindings: not synced", "authn/bindings.go", `if !o.Synced() {`, `if false {`},

	// Durability: a record or revocation is acknowledged only once synced.
	{"bolt: fsync before acknowledging", "store/bolt/bolt.go",
		`FreelistType: bbolt.FreelistArrayType}`, `FreelistType: bbolt.FreelistArrayType, NoSync: true}`},
	{"bolt: the log syncs a new record before it is acknowledged", "store/bolt/wal.go",
		"if err := fileutil.Fdatasync(l.f); err != nil {\n\t\treturn 0, fmt.Errorf(\"bolt: sync log", "if err := error(nil); err != nil {\n\t\treturn 0, fmt.Errorf(\"bolt: sync log"},
	{"bolt: a torn frame ends the log", "store/bolt/wal.go",
		`if crc32.Checksum(b[8:frameHeader+n], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {`, `if false {`},
	{"bolt: opening replays the log", "store/bolt/bolt.go",
		"for _, e := range ents {\n\t\t\tn, err := decodeNewRecord(e.data)", "for _, e := range ents[:0] {\n\t\t\tn, err := decodeNewRecord(e.data)"},
	{"bolt: a commit records how far into the log the file is", "store/bolt/commit.go",
		`applied := binary.BigEndian.AppendUint64(nil, c.log.last)`, `applied := binary.BigEndian.AppendUint64(nil, 0)`},
	{"bolt: records waiting for their commit are read by jti", "store/bolt/bolt.go",
		`if n := pending.byJTI[jti]; n != nil {`, `if n := pending.byJTI[jti]; n != nil && false {`},
	{"bolt: records waiting for their commit are read by name", "store/bolt/bolt.go",
		`if n := pending.byName[name]; n != nil {`, `if n := pending.byName[name]; n != nil && false {`},
	{"bolt: records waiting for their commit are listed", "store/bolt/bolt.go",
		`more := pending.inRange(rng)`, `more := pending.inRange(rng)[:0]`},
	{"bolt: a failed log makes the store unready", "store/bolt/bolt.go",
		"if err := s.writes.err(); err != nil {", "if err := s.writes.err(); err != nil && false {"},
	{"bolt: a new file beside an old log is refused", "store/bolt/bolt.go",
		`tx.Bucket(bucketRecords) == nil && logExists(logDir) {`, `tx.Bucket(bucketRecords) == nil && logExists(logDir) && false {`},

	// The shared key ring: a retirement made through any replica holds on
	// all of them, and concurrent changes do not overwrite each other.
	{"keys: replicas follow the stored ring", "keys/manager.go",
		"for ring := range rings {\n", "for ring := range rings {\n\t\t\t\tring = &store.KeyRing{}\n"},
	{"etcd: key ring swap compares the revision", "store/etcd/keyring.go",
		`If(clientv3.Compare(clientv3.ModRevision(key), "=", ring.Revision)).`, `If().`},
	{"bolt: key ring swap compares the revision", "store/bolt/keyring.go",
		`if int64(rev) != ring.Revision {`, `if false {`},
	{"keys: retiring the active key promotes a successor", "keys/manager.go",
		`if !wasActive || !replace {`, `if !wasActive || replace || !replace {`},

	// The per-user token limit: counted in the write that adds the token.
	{"tokens: the store holds the per-user limit", "issuer/tokens/tokens.go",
		`MaxHeld:        r.opts.MaxPerUser,`, `MaxHeld:        0,`},
	{"bolt: MaxHeld counted in the write transaction", "store/bolt/pending.go",
		`if n.maxHeld > 0 && heldAtLeast(tx, r, n.maxHeld) {`, `if false {`},
	{"etcd: MaxHeld refuses at the bound", "store/etcd/etcd.go",
		`if count >= int64(opts.MaxHeld) {`, `if count >= int64(opts.MaxHeld) && false {`},
	{"etcd: MaxHeld commits only if the count still holds", "store/etcd/etcd.go",
		`clientv3.Compare(clientv3.ModRevision(held), "<", rev+1).WithPrefix()`, `clientv3.Compare(clientv3.ModRevision(held), ">", -rev).WithPrefix()`},

	// The VNC console proxy: who opens a session, and how long it lives.
	{"console: a token in the URL is refused", "console/request.go", `if q.Has(name) {`, `if q.Has(name) && false {`},
	{"console: browser origins are checked", "console/request.go", "if origin == \"\" {\n\t\treturn true", "if true {\n\t\treturn true"},
	{"console: the token is checked for the VM", "console/proxy.go",
		`switch err := p.opts.Verifier.Check(r.Context(), token, ns, vm); {`, `switch err := error(nil); {`},
	{"console: a refused token ends its session", "console/session.go",
		"\t\t\t} else {\n\t\t\t\ts.end(endRefused)\n\t\t\t}\n\t\t\treturn", "\t\t\t} else {\n\t\t\t\tcontinue\n\t\t\t}\n\t\t\treturn"},
	{"console: a token past exp on the proxy's clock opens nothing", "console/proxy.go",
		`if !p.opts.Clock.Now().Before(expiry) {`, `if false {`},
	{"console: a single-use token is claimed before its session opens", "console/proxy.go",
		`switch err := p.opts.Claimer.Claim(r.Context(), token); {`, `switch err := error(nil); {`},
	{"claims: a claim is recorded, once", "issuer/claims/claims.go",
		`switch err := r.records.CreateRecord(ctx, rec, store.CreateOptions{}); {`, `switch err := error(nil); {`},
	{"claims: only single-use tokens are claimed", "issuer/claims/claims.go",
		`|| !c.Private.SingleUse ||`, `|| false ||`},
	{"console: a session ends at its token's expiry", "console/session.go",
		"case <-expiry.C():\n\t\t\ts.end(endExpired)\n\t\t\treturn", "case <-expiry.C():\n\t\t\tcontinue"},

	// The webhook.
	{"webhook: requested audiences", "authn/webhook.go",
		`h.reviewer.Review(r.Context(), req.Spec.Token, req.Spec.Audiences)`, `h.reviewer.Review(r.Context(), req.Spec.Token, nil)`},
	{"webhook: answer in the request's version", "authn/webhook.go",
		`out := reviewResponse{APIVersion: req.APIVersion, Kind: "TokenReview"}`, `out := reviewResponse{APIVersion: TokenReviewV1, Kind: "TokenReview"}`},
	{"webhook: unknown version refused", "authn/webhook.go",
		`if req.APIVersion != TokenReviewV1 && req.APIVersion != TokenReviewV1beta1 {`, `if false {`},
	{"webhook: kind checked", "authn/webhook.go", `if req.Kind != "TokenReview" {`, `if false {`},
	{"webhook: field names case-sensitive", "authn/webhook.go",
		`if err := jsonv2.Unmarshal(body, &req); err != nil {`, `if err := json.Unmarshal(body, &req); err != nil && jsonv2.Unmarshal(body, &req) != nil {`},
	{"webhook: undecided is 503", "authn/webhook.go",
		"if err != nil {\n\t\th.log.WarnContext", "if false {\n\t\th.log.WarnContext"},
	{"webhook: 503 carries Retry-After", "authn/webhook.go",
		`w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))`, `_ = strconv.Itoa`},
	{"webhook: body limit", "authn/webhook.go",
		`io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBodyBytes))`, `io.ReadAll(r.Body)`},
}
