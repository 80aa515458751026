#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into .e2e/bin,
# once: binaries already there at the pinned versions are kept.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces every staging
# module with a local path), so a throw-away module outside the project's own
# go.mod requires it and pins each staging module to the matching v0 release.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.e2e/bin"
work="$root/.e2e/build"
mkdir -p "$bin" "$work"

have() { [ -x "$bin/$1" ] && [ "$(cat "$bin/$1.version" 2>/dev/null)" = "$2" ]; }

if ! have kube-apiserver "$KUBE_VERSION" || ! have kubectl "$KUBE_VERSION"; then
  mod="$work/kube"
  mkdir -p "$mod"
  staging_version="v0.${KUBE_VERSION#v1.}"
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module portcullis.dev/e2e-kube"
    grep -E '^(go|godebug) ' "$gomod"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    # Every staging module listed as v0.0.0 in k8s.io/kubernetes' require block.
    awk '/^require \(/{r=1;next} r&&/^\)/{r=0} r&&$2=="v0.0.0"{print $1}' "$gomod" |
      while read -r m; do echo "replace $m => $m $staging_version"; done
  } > "$mod/go.mod"
  printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' > "$mod/tools.go"
  (
    cd "$mod"
    GOFLAGS=-mod=mod go mod tidy
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    echo "$KUBE_VERSION" > "$bin/kube-apiserver.version"
    GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
    echo "$KUBE_VERSION" > "$bin/kubectl.version"
  )
fi

if ! have etcd "$ETCD_VERSION"; then
  mod="$work/etcd"
  mkdir -p "$mod"
  printf 'module portcullis.dev/e2e-etcd\n\ngo 1.26\n' > "$mod/go.mod"
  printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3/embed"\n' > "$mod/tools.go"
  (
    cd "$mod"
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    GOFLAGS=-mod=mod go mod tidy
    GOFLAGS=-mod=mod go build -o "$bin/etcd" go.etcd.io/etcd/server/v3
    echo "$ETCD_VERSION" > "$bin/etcd.version"
  )
fi
"$bin/kubectl" version --client >/dev/null
echo "e2e tools in $bin: kube-apiserver $KUBE_VERSION, kubectl $KUBE_VERSION, etcd $ETCD_VERSION"
