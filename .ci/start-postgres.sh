#!/usr/bin/env bash
# Start a real PostgreSQL server for the test suite and print its admin URL on stdout.
# Installs Debian's postgresql if the machine lacks it. Needs root (CI runs as root).
set -euo pipefail

log() { echo "[start-postgres] $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  bash "$(dirname "$0")/install-system.sh"
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
  log "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi
read -r ver cluster port status _ < <(pg_lsclusters -h | head -n 1)
if [ "$status" != "online" ]; then
  log "starting cluster $ver/$cluster on port $port"
  pg_ctlcluster "$ver" "$cluster" start >&2
fi
for _ in $(seq 1 30); do
  if runuser -u postgres -- pg_isready -q -p "$port"; then break; fi
  sleep 1
done
runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 >&2 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'consentry') THEN
    CREATE ROLE consentry LOGIN CREATEDB PASSWORD 'consentry';
  END IF;
END $$;
SELECT 'CREATE DATABASE consentry OWNER consentry'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'consentry') \gexec
SQL
echo "postgresql+psycopg://consentry:consentry@127.0.0.1:${port}/consentry"
