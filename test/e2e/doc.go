// Package e2e runs Portcullis as a real process next to the real kubectl (and,
// as the suite grows, kube-apiserver and etcd) built from the Go module proxy
// by hack/e2e-tools.sh. Every process it starts is stopped by PID.
package e2e
