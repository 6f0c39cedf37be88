#!/bin/sh
# Regenerates clients/typescript/src/gen from proto/ (and the local copy of
# google/rpc/error_details.proto) with protoc-gen-es, a local plugin pinned in
# package-lock.json. Deterministic: running it twice changes nothing.
# CI runs it and then fails if `git status --porcelain clients/` prints anything.
. "$(dirname "$0")/lib.sh"

ensure_node_modules
ensure_buf
cd "$REPO_ROOT"
log "buf generate --template clients/buf.gen.typescript.yaml"
"$BUF" generate --template clients/buf.gen.typescript.yaml
