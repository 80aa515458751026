package authn

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The TokenReview versions the webhook answers, each in its own version.
const (
	TokenReviewV1      = "authentication.k8s.io/v1"
	TokenReviewV1beta1 = "authentication.k8s.io/v1beta1"
)

// DefaultMaxBodyBytes bounds a review request body. It leaves room for a
// token over MaxTokenBytes, so that one gets a clean "not authenticated".
const DefaultMaxBodyBytes = 64 << 10

// RetryAfterSeconds is what a 503 asks kube-apiserver to wait.
const RetryAfterSeconds = 1

// Reviewer decides tokens; *Verifier implements it.
type Reviewer interface {
	Review(ctx context.Context, token string, audiences []string) (Result, error)
}

// Observer is told the outcome of every review, for metrics and audit. A
// nil Observer is allowed.
type Observer interface {
	ObserveReview(ctx context.Context, res Result, err error, d time.Duration)
}

// WebhookHandler answers kube-apiserver's TokenReview webhook.
type WebhookHandler struct {
	reviewer     Reviewer
	maxBodyBytes int64
	observer     Observer
	log          *slog.Logger
	deny         map[string][]byte
}

// NewWebhookHandler returns a handler for POST /authenticate.
func NewWebhookHandler(r Reviewer, maxBodyBytes int64, obs Observer, log *slog.Logger) *WebhookHandler {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &WebhookHandler{reviewer: r, maxBodyBytes: maxBodyBytes, observer: obs, log: log, deny: map[string][]byte{}}
	// The "not authenticated" answer is the same every time: encode it once.
	for _, v := range []string{TokenReviewV1, TokenReviewV1beta1} {
		h.deny[v], _ = json.Marshal(reviewResponse{APIVersion: v, Kind: "TokenReview"})
	}
	return h
}

// reviewRequest is the part of a TokenReview request that is read. v1 and
// v1beta1 have the same wire shape.
type reviewRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
}

// reviewResponse is a TokenReview answer in either version.
type reviewResponse struct {
	APIVersion string                             `json:"apiVersion"`
	Kind       string                             `json:"kind"`
	Metadata   struct{}                           `json:"metadata"`
	Status     authenticationv1.TokenReviewStatus `json:"status"`
}

// ServeHTTP implements http.Handler.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "only POST is allowed")
		return
	}
	req, status, msg := h.decode(w, r)
	if status != 0 {
		h.log.DebugContext(r.Context(), "malformed review request", "status", status, "err", msg)
		writeStatus(w, status, metav1.StatusReasonBadRequest, msg)
		return
	}
	start := time.Now()
	res, err := h.reviewer.Review(r.Context(), req.Spec.Token, req.Spec.Audiences)
	if h.observer != nil {
		h.observer.ObserveReview(r.Context(), res, err, time.Since(start))
	}
	if err != nil {
		h.log.WarnContext(r.Context(), "review could not be decided", "jti", res.JTI, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the token store cannot answer, retry")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if !res.Authenticated() {
		w.Write(h.deny[req.APIVersion])
		return
	}
	out := reviewResponse{APIVersion: req.APIVersion, Kind: "TokenReview"}
	out.Status = authenticationv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     res.Audiences,
		User: authenticationv1.UserInfo{
			Username: res.User.Name,
			UID:      res.User.UID,
			Groups:   res.User.Groups,
			Extra:    make(map[string]authenticationv1.ExtraValue, len(res.User.Extra)),
		},
	}
	for k, v := range res.User.Extra {
		out.Status.User.Extra[k] = v
	}
	json.NewEncoder(w).Encode(out)
}

// decode reads and checks the request; a non-zero status means it is
// malformed and says how to answer.
func (h *WebhookHandler) decode(w http.ResponseWriter, r *http.Request) (*reviewRequest, int, string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, "request body is larger than " + strconv.FormatInt(h.maxBodyBytes, 10) + " bytes"
		}
		return nil, http.StatusBadRequest, "request body could not be read"
	}
	// Field names match exactly, as kube-apiserver's codecs match them:
	// encoding/json would let a "TOKEN" key override "token". The v2 engine
	// matches exactly and refuses a name given twice.
	var req reviewRequest
	if err := jsonv2.Unmarshal(body, &req); err != nil {
		return nil, http.StatusBadRequest, "request body is not a JSON TokenReview"
	}
	if req.APIVersion != TokenReviewV1 && req.APIVersion != TokenReviewV1beta1 {
		return nil, http.StatusBadRequest, "apiVersion " + strconv.Quote(req.APIVersion) + " is not supported: expected " + TokenReviewV1 + " or " + TokenReviewV1beta1
	}
	if req.Kind != "TokenReview" {
		return nil, http.StatusBadRequest, "kind " + strconv.Quote(req.Kind) + " is not supported: expected \"TokenReview\""
	}
	return &req, 0, ""
}

// writeStatus writes a Kubernetes Status error.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   reason,
		Code:     int32(code),
	})
}
