#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the db tests and print its URL.
# Usage: eval "$(bash .ci/postgres.sh)"   (exports PANELBEATER_TEST_POSTGRES_URL)
set -euo pipefail
PORT=${PB_PG_PORT:-55432}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA=${PB_PG_DATA:-/tmp/panelbeater-pg}
if ! su postgres -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
  rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres "$PGDATA"
  su postgres -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
  su postgres -c "$PGBIN/pg_ctl -D $PGDATA -o '-h 127.0.0.1 -p $PORT -k /tmp -F' -l $PGDATA/server.log start -w" >/dev/null
fi
echo "export PANELBEATER_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
