// Package e2e runs Portcullis as real processes next to a real
// kube-apiserver, kubectl and etcd, built from the Go module proxy by
// hack/e2e-tools.sh. Every process it starts is stopped by PID.
//
// kubeapiserver_test.go is longer than the 400 lines other files keep to:
// TestKubeAPIServer is one scenario on one cluster (starting kube-apiserver
// costs tens of seconds), told as a sequence of subtests that build on each
// other's tokens and objects; split across files it would read out of order.
package e2e
