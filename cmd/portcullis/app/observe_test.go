package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"portcullis.dev/portcullis/config"
)

// scrape returns the value of one metric line (name{labels}) on /metrics.
func scrape(t *testing.T, h *harness, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestMetricsAndAuditLog(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	h := startServer(t, func(c *config.Config) { c.AuditLogPath = auditPath })
	tok := h.mint("ns", "sa", 3600).Status.Token
	if !h.reviewAt(tok) || h.reviewAt("not-a-token") {
		t.Fatal("reviews")
	}
	if err := RunRevoke(context.Background(), &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, tok)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	h.reviewAt(tok)
	h.keysCLI("rotate")

	for series, want := range map[string]float64{
		`portcullis_tokens_minted_total{kind="serviceaccount"}`:         1,
		`portcullis_reviews_total{reason="",result="authenticated"}`:    1,
		`portcullis_reviews_total{reason="malformed",result="refused"}`: 1,
		`portcullis_reviews_total{reason="revoked",result="refused"}`:   1,
		`portcullis_revocations_total{scope="jti"}`:                     1,
		`portcullis_signing_keys{state="next"}`:                         1,
		`portcullis_signing_keys{state="active"}`:                       1,
	} {
		if got := scrape(t, h, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if exp := scrape(t, h, "portcullis_serving_certificate_expiry_timestamp_seconds"); exp < 1.7e9 {
		t.Errorf("certificate expiry gauge = %v", exp)
	}
	if n := scrape(t, h, `portcullis_store_request_duration_seconds_count{operation="create_record"}`); n < 1 {
		t.Errorf("store latency histogram counted %v record creations", n)
	}
	if n := scrape(t, h, "portcullis_cache_hits_total") + scrape(t, h, "portcullis_cache_misses_total"); n < 3 {
		t.Errorf("cache hits+misses = %v, want one per review", n)
	}
	if n := scrape(t, h, "portcullis_review_duration_seconds_count"); n < 3 {
		t.Errorf("review latency histogram counted %v reviews, want 3 or more", n)
	}

	h.stop()
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, event := range []string{`"event":"mint"`, `"event":"revoke"`, `"event":"review-refused"`, `"event":"key-added"`, `"by":"portcullis-admin"`} {
		if !strings.Contains(string(audit), event) {
			t.Errorf("audit log lacks %s:\n%s", event, audit)
		}
	}
	if sig := tok[strings.LastIndexByte(tok, '.')+1:]; strings.Contains(string(audit), sig) {
		t.Fatal("a token value is in the audit log")
	}
}

// TestAuditLogCannotBeFlooded: anyone can make kube-apiserver forward junk
// bearer tokens. 100k junk reviews are counted in metrics but write no audit
// line; refusals of real tokens of ours are audited, and the file is
// rotated by size, so it stays bounded either way.
func TestAuditLogCannotBeFlooded(t *testing.T) {
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	h := startServer(t, func(c *config.Config) {
		c.AuditLogPath, c.AuditLogMaxSize, c.AuditLogMaxBackups = auditPath, 1, 2
	})
	review := func(token string) {
		body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`
		rec := httptest.NewRecorder()
		h.srv.webhook.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/authenticate", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("review: %d %s", rec.Code, rec.Body)
		}
	}
	good := h.mint("ns", "sa", 3600).Status.Token
	parts := strings.Split(good, ".")
	junk := []func(i int) string{
		func(i int) string { return "junk-" + strconv.Itoa(i) },
		func(i int) string { return "a.b." + strconv.Itoa(i) },
		func(i int) string { return parts[0] + "." + parts[1] + ".AAAA" + strconv.Itoa(i) }, // our header and claims, a bad signature
	}
	const junkReviews = 100_000
	for i := range junkReviews {
		review(junk[i%len(junk)](i))
	}
	if n := scrape(t, h, `portcullis_reviews_total{reason="malformed",result="refused"}`) + scrape(t, h, `portcullis_reviews_total{reason="signature",result="refused"}`); n != junkReviews {
		t.Fatalf("metrics counted %v junk refusals, want %d", n, junkReviews)
	}
	if data, _ := os.ReadFile(auditPath); strings.Contains(string(data), "review-refused") {
		t.Fatalf("junk reviews reached the audit log (%d bytes)", len(data))
	}

	// A revoked token of ours is audited at every refusal; rotation bounds it.
	if err := RunRevoke(context.Background(), &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, good)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for range 30_000 {
		review(good)
	}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(auditPath), "audit*.log"))
	var total int64
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > 1<<20 {
			t.Fatalf("%s is %d bytes, over the 1 MB rotation size", f, info.Size())
		}
		total += info.Size()
	}
	if len(files) < 2 || len(files) > 3 {
		t.Fatalf("audit files %v: want the log and at most 2 rotated backups", files)
	}
	if data, _ := os.ReadFile(auditPath); !strings.Contains(string(data), `"reason":"revoked"`) {
		t.Fatal("the refusal of a revoked token of ours was not audited")
	}
	t.Logf("30,000 audited refusals: %d files, %d bytes in all", len(files), total)
}
