#!/bin/sh
# Configures the compose stack's Vault for svid-broker (run by the vault-init service; idempotent).
# The broker logs in with its JWT-SVID: JWT auth verifies it with the keys SPIRE's OIDC discovery
# provider publishes, and bound_issuer is SPIRE's jwt_issuer (spire/server.conf), so a JWT-SVID
# minted by any other issuer is refused.
set -eu
VAULT_TOKEN="$(cat /run/secrets/vault-root-token)"
export VAULT_TOKEN
ISSUER="http://spire-oidc:8080"
BROKER_ID="spiffe://example.org/broker"

until vault status >/dev/null 2>&1; do sleep 1; done
# The discovery provider answers once SPIRE has signed its first JWT key.
until wget -q -O /dev/null "$ISSUER/.well-known/openid-configuration"; do sleep 2; done

vault auth list | grep -q '^jwt/' || vault auth enable jwt
vault write auth/jwt/config oidc_discovery_url="$ISSUER" bound_issuer="$ISSUER"

# What agents get from the vault/ci-token role.
vault policy write ci-read - <<'HCL'
path "secret/data/ci/*" { capabilities = ["read"] }
HCL

# What the broker may do: mint the role catalog's Vault credentials, revoke what it minted.
vault policy write svid-broker - <<'HCL'
path "auth/token/create-orphan"   { capabilities = ["update", "sudo"] }
path "auth/token/revoke-accessor" { capabilities = ["update"] }
path "sys/leases/revoke"          { capabilities = ["update"] }
path "sys/leases/lookup"          { capabilities = ["update"] }
HCL

# Only the broker's SPIFFE ID may use this role. token_ttl covers the longest vault/* role (900 s).
vault write auth/jwt/role/svid-broker role_type=jwt user_claim=sub \
  bound_audiences=vault bound_subject="$BROKER_ID" \
  token_policies=svid-broker token_ttl=1h token_max_ttl=4h
echo "vault-init: JWT auth bound to $ISSUER, role svid-broker for $BROKER_ID"
