#!/bin/sh
# Temporal's persistence and visibility databases on PostgreSQL, with their schemas brought up
# to the version this server image ships. Safe to run on every start: an existing database
# or versioned schema is kept, and update-schema applies only the versions it lacks (and
# fails when the schema is missing, which stops the server from starting on a bad database).
set -eu
: "${SQL_HOST:?}" "${SQL_USER:?}" "${SQL_PASSWORD:?}"
port="${SQL_PORT:-5432}"
schemas=/etc/temporal/schema/postgresql/v12

sql_tool() {
    database="$1"
    shift
    temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p "$port" -u "$SQL_USER" \
        --db "$database" "$@"
}

for pair in temporal:temporal temporal_visibility:visibility; do
    database="${pair%%:*}"
    schema="${pair##*:}"
    sql_tool "$database" create || echo "database $database exists"
    sql_tool "$database" setup-schema -v 0.0 || echo "database $database is versioned already"
    sql_tool "$database" update-schema -d "$schemas/$schema/versioned"
done
echo "Temporal schemas are up to date"
