#!/usr/bin/env bash
# Installs the Go tools the lint step needs (staticcheck) into GOBIN when
# missing. Pinned, so every machine lints the same way.
set -euo pipefail
STATICCHECK_VERSION=2026.2.2
bin=$(go env GOPATH)/bin
if ! "$bin/staticcheck" -version 2>/dev/null | grep -q "$STATICCHECK_VERSION"; then
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
