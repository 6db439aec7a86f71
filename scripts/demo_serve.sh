#!/usr/bin/env bash
# `make run`, second half: serve the demo registry (built in .demo/registry by `consentry demo`) with one
# open demo statement and a demo operator, on 127.0.0.1 in --dev mode. Ctrl-C stops it.
#
# Usage: scripts/demo_serve.sh [HOME] [PORT]   (defaults: .demo/registry 8000; PORT=0 is not supported)
set -euo pipefail

HOME_DIR="${1:-.demo/registry}"
PORT="${2:-${CONSENTRY_DEMO_PORT:-8000}}"
BIN="${CONSENTRY_BIN:-.venv/bin/consentry}"
BASE="http://127.0.0.1:${PORT}"
SLUG="open-letter"
OPERATOR="demo"
# A throw-away password for a throw-away registry on loopback; printed below on purpose.
PASSWORD="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

export CONSENTRY_HOME="$HOME_DIR"
export CONSENTRY_BASE_URL="$BASE"
unset CONSENTRY_DATABASE_URL

c() { "$BIN" --home "$HOME_DIR" "$@"; }

# The demo registry already exists (consentry demo); init only upgrades its schema.
c init >/dev/null
if ! c statement show "$SLUG" >/dev/null 2>&1; then
  c statement create --slug "$SLUG" --by demo \
    --title "Open letter: no training on our work without consent" \
    --text "We, writers, musicians, actors and the organisations that represent us, do not consent to the use of our work for training generative AI without our explicit, informed and remunerated permission." \
    --goal 10000 --require occupation >/dev/null
  c statement open "$SLUG" --by demo >/dev/null
fi
if c operator list 2>/dev/null | grep -qw "$OPERATOR"; then
  CONSENTRY_OPERATOR_PASSWORD="$PASSWORD" c operator passwd "$OPERATOR" >/dev/null
else
  CONSENTRY_OPERATOR_PASSWORD="$PASSWORD" c operator add "$OPERATOR" --role operator >/dev/null
fi

cat <<INFO

Consentry is serving the demo registry ($HOME_DIR) on $BASE  (Ctrl-C stops it)

  statement page   $BASE/statements/$SLUG
  widget           $BASE/statements/$SLUG/widget
  count.json       $BASE/statements/$SLUG/count.json
  API              $BASE/api/v1/statements/$SLUG   (docs: $BASE/api/v1/docs)
  admin login      $BASE/admin/login   user: $OPERATOR   password: $PASSWORD
  dev mailbox      $HOME_DIR/dev-mail  (maildir: every e-mail the service sends lands here;
                   confirmation links point at $BASE)

INFO

# exec: Ctrl-C reaches uvicorn directly, which shuts down cleanly (jobs stopped, mail flushed).
exec "$BIN" --home "$HOME_DIR" serve --dev --host 127.0.0.1 --port "$PORT"
