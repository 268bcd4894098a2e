#!/bin/sh
# The database server in the foreground (listening on every address of the container, see
# course.cnf), with the app's database, user and table made (idempotently) by the init file
# at each start.
set -e
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
# An empty data directory (a volume that was not filled from the image): the system tables.
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
sed "s/@PASSWORD@/${DB_PASSWORD:?DB_PASSWORD is not set}/" /etc/mysql/init.sql > /run/mysqld/init.sql
chown mysql /run/mysqld/init.sql
exec mariadbd --user=mysql --init-file=/run/mysqld/init.sql
