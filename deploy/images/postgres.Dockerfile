# PostgreSQL 15 from Debian's packages, standing in for the public postgres image where no
# public registry answers (deploy/compose.sh): the same variables (POSTGRES_USER,
# POSTGRES_PASSWORD_FILE, POSTGRES_DB, POSTGRES_INITDB_ARGS), /docker-entrypoint-initdb.d on the
# first start, data in /var/lib/postgresql/data, the server as uid 999.
ARG DEBIAN_IMAGE=localhost/callvault/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf \
    && groupadd --gid 999 postgres \
    && useradd --uid 999 --gid 999 --home-dir /var/lib/postgresql postgres \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY --chmod=0755 postgres-run.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
