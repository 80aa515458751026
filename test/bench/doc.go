// Package bench measures Portcullis against baselines in the same run: the
// review server against a bare Go HTTPS TokenReview echo server, the review
// pipeline against raw jwx verification, and mint rates. `make bench` prints
// the table; the Benchmark functions work with `go test -bench`.
package bench
