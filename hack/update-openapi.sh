#!/usr/bin/env bash
# Regenerates the issuer's OpenAPI definitions (server-side apply and
# kubectl's validation need them) with the openapi-gen pinned in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
go tool openapi-gen \
  --output-dir issuer/server/openapi \
  --output-pkg portcullis.dev/portcullis/issuer/server/openapi \
  --output-file zz_generated.openapi.go \
  --go-header-file hack/boilerplate.go.txt \
  --report-filename /dev/null \
  k8s.io/apimachinery/pkg/apis/meta/v1 \
  k8s.io/apimachinery/pkg/runtime \
  k8s.io/apimachinery/pkg/version \
  k8s.io/api/authentication/v1 \
  k8s.io/api/core/v1 \
  portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1 \
  portcullis.dev/portcullis/issuer/apis/ext/v1 \
  portcullis.dev/portcullis/issuer/apis/kubevirt/v1

# The definitions name every core/v1 type, deprecated ones (Endpoints) too:
# that is what they describe, not a use of them.
f=issuer/server/openapi/zz_generated.openapi.go
sed -i '0,/^package openapi$/s//\/\/lint:file-ignore SA1019 OpenAPI definitions describe deprecated core\/v1 types; they do not use them.\n\npackage openapi/' "$f"
gofmt -w "$f"
