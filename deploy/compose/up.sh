#!/usr/bin/env sh
# Brings up the whole compose stack with one command, from anywhere:
#   ./deploy/compose/up.sh
# 1. makes deploy/compose/secrets/ once: a CA and a Redis server certificate, the Redis ACL file
#    (deploy/redis/users.acl.in with fresh passwords), the broker's Redis password, a Vault root
#    token for vault-init (dev mode only);
# 2. builds the broker image and starts the SPIRE server;
# 3. registers the catalog's workloads (spire/register.sh entries) and makes the agent's join token;
# 4. starts everything else and waits until it is healthy.
# Needs docker (with compose v2) and openssl on the host.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
COMPOSE="docker compose -f $HERE/docker-compose.yml"
SECRETS="$HERE/secrets"
NODE_ID=spiffe://example.org/node/compose-host

random() { openssl rand -base64 24 | tr -d '/+=\n'; }
sha256() { printf %s "$1" | openssl dgst -sha256 -r | cut -d' ' -f1; }

make_secrets() {
  [ -f "$SECRETS/redis-users.acl" ] && return 0
  echo "up: creating $SECRETS (TLS files, passwords)"
  mkdir -p "$SECRETS/tls" && chmod 700 "$SECRETS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=svid-broker compose CA" -keyout "$SECRETS/tls/ca.key" -out "$SECRETS/tls/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=redis" \
    -keyout "$SECRETS/tls/redis.key" -out "$SECRETS/tls/redis.csr" 2>/dev/null
  printf 'subjectAltName=DNS:redis\nextendedKeyUsage=serverAuth\n' > "$SECRETS/tls/redis.ext"
  openssl x509 -req -in "$SECRETS/tls/redis.csr" -CA "$SECRETS/tls/ca.crt" -CAkey "$SECRETS/tls/ca.key" \
    -CAcreateserial -days 365 -extfile "$SECRETS/tls/redis.ext" -out "$SECRETS/tls/redis.crt" 2>/dev/null
  rm -f "$SECRETS/tls/redis.csr" "$SECRETS/tls/redis.ext" "$SECRETS/tls/ca.key"
  # Containers read these as their own users (redis, uid 10001); the directory stays 0700.
  chmod 644 "$SECRETS/tls/redis.key"
  broker=$(random) admin=$(random)
  printf '%s\n' "$broker" > "$SECRETS/redis-broker-password"
  printf '%s\n' "$admin" > "$SECRETS/redis-admin-password"
  sed -e "s/@SVID_BROKER_PASSWORD_SHA256@/$(sha256 "$broker")/" -e "s/@ADMIN_PASSWORD_SHA256@/$(sha256 "$admin")/" \
    "$HERE/../redis/users.acl.in" > "$SECRETS/redis-users.acl"
  random > "$SECRETS/vault-root-token"
  chmod 644 "$SECRETS/redis-broker-password" "$SECRETS/redis-users.acl" "$SECRETS/vault-root-token"
}

make_secrets
export JOIN_TOKEN="${JOIN_TOKEN:-$(cat "$SECRETS/join-token" 2>/dev/null || echo pending)}"
$COMPOSE build
$COMPOSE up -d --wait spire-server
SPIRE_COMPOSE="$COMPOSE" "$HERE/../../spire/register.sh" entries
if [ "$JOIN_TOKEN" = pending ]; then
  JOIN_TOKEN=$(SPIRE_COMPOSE="$COMPOSE" NODE_ID="$NODE_ID" "$HERE/../../spire/register.sh" join-token)
  printf '%s\n' "$JOIN_TOKEN" > "$SECRETS/join-token"
fi
$COMPOSE up -d --wait
echo "up: the stack is running. Try: docker compose -f $HERE/docker-compose.yml exec demo-agent node dist/src/cli/main.js request --env dev --role token/demo"
