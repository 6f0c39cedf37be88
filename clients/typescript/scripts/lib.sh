# Sourced by gen.sh and test.sh. Sets PKG_DIR, REPO_ROOT; defines deps helpers.
set -eu

PKG_DIR=$(cd "$(dirname "$0")/.." && pwd)
REPO_ROOT=$(cd "$PKG_DIR/../.." && pwd)

log() { printf '[clients/typescript] %s\n' "$*" >&2; }

need() {
    command -v "$1" >/dev/null 2>&1 || { log "error: $1 not found on PATH"; exit 1; }
}

# npm ci from the committed lock file, skipped when node_modules already
# matches it (a copy of the lock is kept in node_modules as a stamp).
ensure_node_modules() {
    need node
    need npm
    stamp="$PKG_DIR/node_modules/.deskd-lock-stamp"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$PKG_DIR/package-lock.json"; then
        return 0
    fi
    log "npm ci"
    (cd "$PKG_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$PKG_DIR/package-lock.json" "$stamp"
}

# buf is pinned once for the repository, in .tools/package.json.
ensure_buf() {
    BUF="$REPO_ROOT/.tools/node_modules/.bin/buf"
    if [ ! -x "$BUF" ]; then
        log "npm ci in .tools (buf)"
        (cd "$REPO_ROOT/.tools" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
