#!/usr/bin/env sh
# Registers the broker, the demo agent and the on-call security identity with a running SPIRE
# server, after the node has joined with the token printed by `join-token`.
#   ./spire/register.sh join-token            # prints a join token for spiffe://acme.io/node/broker-host
#   ./spire/register.sh entries               # creates the entries in spire/entries.json
#   ./spire/register.sh agent ID uid:1001     # registers one more agent
set -eu
SERVER=${SPIRE_SERVER:-"docker compose -f deploy/docker-compose.yml exec -T spire-server /opt/spire/bin/spire-server"}
SOCK=${SPIRE_SERVER_SOCKET:-/tmp/spire-server/private/api.sock}
NODE_ID=${NODE_ID:-spiffe://acme.io/node/broker-host}

case "${1:-}" in
  join-token)
    $SERVER token generate -socketPath "$SOCK" -spiffeID "$NODE_ID" -ttl 600 ;;
  entries)
    $SERVER entry create -socketPath "$SOCK" -data /etc/spire/entries.json ;;
  agent)
    [ $# -eq 3 ] || { echo "usage: $0 agent SPIFFE_ID SELECTOR (e.g. unix:uid:1001)" >&2; exit 2; }
    $SERVER entry create -socketPath "$SOCK" -parentID "$NODE_ID" -spiffeID "$2" -selector "$3" -x509SVIDTTL 3600 -jwtSVIDTTL 300 ;;
  show)
    $SERVER entry show -socketPath "$SOCK" ;;
  *)
    echo "usage: $0 join-token | entries | agent SPIFFE_ID SELECTOR | show" >&2; exit 2 ;;
esac
