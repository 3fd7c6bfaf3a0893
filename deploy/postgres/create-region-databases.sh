#!/bin/sh
# Runs once, when the regions' PostgreSQL starts on an empty data volume: one database per
# region, owned by the server's user, and the payment gateway's (GATEWAY_DATABASE, if set).
# Each region's worker migrates its own when it starts; the gateway makes its tables itself.
set -eu
: "${REGION_DATABASES:?name the region databases, space-separated}"
for database in $REGION_DATABASES ${GATEWAY_DATABASE:-}; do
    echo "creating database $database"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\""
done
