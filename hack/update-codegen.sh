#!/usr/bin/env bash
# Regenerates the API types' generated code with the generators pinned in
# go.mod: DeepCopy functions (deepcopy-gen), OpenAPI model names and the
# OpenAPI definitions (openapi-gen; server-side apply and kubectl's
# validation need them).
set -euo pipefail
cd "$(dirname "$0")/.."
apis=(
  portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1
  portcullis.dev/portcullis/issuer/apis/ext/v1
  portcullis.dev/portcullis/issuer/apis/kubevirt/v1
)

go tool deepcopy-gen \
  --output-file zz_generated.deepcopy.go \
  --go-header-file hack/boilerplate.go.txt \
  "${apis[@]}"

go tool openapi-gen \
  --output-dir issuer/server/openapi \
  --output-pkg portcullis.dev/portcullis/issuer/server/openapi \
  --output-file zz_generated.openapi.go \
  --output-model-name-file zz_generated.model_name.go \
  --go-header-file hack/boilerplate.go.txt \
  --report-filename /dev/null \
  --readonly-pkg k8s.io/apimachinery/pkg/apis/meta/v1 \
  --readonly-pkg k8s.io/apimachinery/pkg/runtime \
  --readonly-pkg k8s.io/apimachinery/pkg/version \
  --readonly-pkg k8s.io/api/authentication/v1 \
  --readonly-pkg k8s.io/api/core/v1 \
  k8s.io/apimachinery/pkg/apis/meta/v1 \
  k8s.io/apimachinery/pkg/runtime \
  k8s.io/apimachinery/pkg/version \
  k8s.io/api/authentication/v1 \
  k8s.io/api/core/v1 \
  "${apis[@]}"

# The definitions name every core/v1 type, deprecated ones (Endpoints) too:
# that is what they describe, not a use of them.
f=issuer/server/openapi/zz_generated.openapi.go
sed -i '0,/^package openapi$/s//\/\/lint:file-ignore SA1019 OpenAPI definitions describe deprecated core\/v1 types; they do not use them.\n\npackage openapi/' "$f"
gofmt -w "$f"
