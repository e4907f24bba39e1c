#!/usr/bin/env bash
# Runs the pgTAP tests in supabase/tests against $DATABASE_URL (a migrated database), after the
# seed, as `supabase test db` does after `supabase db reset`. Run it inside `local-stack`.
set -euo pipefail
: "${DATABASE_URL:?run this under target/debug/local-stack, or point DATABASE_URL at a migrated database}"
cd "$(dirname "$0")/.."
psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c 'create extension if not exists pgtap'
psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f supabase/seed.sql
pg_prove --failures -d "$DATABASE_URL" supabase/tests/database/*.test.sql
