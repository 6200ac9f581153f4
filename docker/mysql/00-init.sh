#!/bin/sh
# Runs once when the mysql:8 container initialises its data directory: the fixture
# database the tests use (without tests/fixtures/mysql/03_mariadb.sql, which needs MariaDB)
# and the SELECT-only user the connector reads it with.
set -eu
mysql -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE DATABASE connector_test CHARACTER SET utf8mb4;
CREATE USER 'connector_ro'@'%' IDENTIFIED BY '${CONNECTOR_RO_PASSWORD}';
GRANT SELECT, SHOW VIEW, EXECUTE ON connector_test.* TO 'connector_ro'@'%';
SQL
for f in /fixtures/01_schema.sql /fixtures/02_data.sql; do
  mysql -uroot -p"$MYSQL_ROOT_PASSWORD" connector_test < "$f"
done
