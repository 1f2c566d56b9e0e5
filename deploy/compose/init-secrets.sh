#!/bin/sh
# Makes the local trial's secrets once, into the `trial-secrets` volume (never into the
# repository). Each file is readable only by the container user that needs it.
set -eu
umask 077
dir=/run/trial-secrets
cd "$dir"

make() {  # make NAME OWNER MODE: 32 random bytes, base64, unless NAME exists
    if [ ! -s "$1" ]; then
        head -c 32 /dev/urandom | base64 | tr -d '\n' > "$1"
    fi
    chown "$2" "$1"
    chmod "$3" "$1"
}

make postgres_password 70:70 0400         # the postgres image's user (alpine: uid 70)
make data_key_k1 10001:10001 0400         # provisioner's data-encryption key
make session_secret 10001:10001 0400      # signs the browser session cookie
make jitsi_app_secret 10001:10001 0400    # Jitsi JWT secret
make oidc_web_client_secret 10001:1000 0440         # shared with the OpenID provider (node, gid 1000)
make oidc_calendar_sync_secret 10001:1000 0440      # client-credentials integration

# libpq-style password file read by asyncpg (PGPASSFILE): host:port:db:user:password
printf 'postgres:5432:provisioner:provisioner:%s\n' "$(cat postgres_password)" > pgpass
chown 10001:10001 pgpass
chmod 0600 pgpass
echo "trial secrets ready in $dir"
