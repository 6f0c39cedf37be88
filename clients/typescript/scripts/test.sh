#!/bin/sh
# Builds the package (dist/: ESM .js + .d.ts), type-checks everything strictly
# (the tests use the package through its "exports", like an application), and
# runs the node:test suite against a real deskd (test/harness.ts starts it on a fresh database).
#
# Needs: PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres`, psql, and
# the server binary (DESKD_BIN, default target/debug/deskd).
. "$(dirname "$0")/lib.sh"

ensure_node_modules
need psql
DESKD_BIN=${DESKD_BIN:-$REPO_ROOT/target/debug/deskd}
export DESKD_BIN
[ -x "$DESKD_BIN" ] || { log "error: no deskd binary at $DESKD_BIN (cargo build, or set DESKD_BIN)"; exit 1; }

cd "$PKG_DIR"
TSC=node_modules/.bin/tsc
rm -rf build dist

log "build: tsc -p tsconfig.build.json -> dist/ (ESM .js + .d.ts)"
"$TSC" -p tsconfig.build.json

log "typecheck: tsc -p tsconfig.json --noEmit (strict: src, generated code, tests against dist/)"
"$TSC" -p tsconfig.json --noEmit

log "build tests: tsc -p tsconfig.test.json -> build/"
"$TSC" -p tsconfig.test.json

log "node --test"
node --test --test-reporter=spec build/test/*.test.js
