#!/usr/bin/env sh
# Applies SPIRE registration generated from the agent catalog (svid-broker spire entries), so
# what SPIRE registers and what policy's AgentGroups say come from one list.
#   ./spire/register.sh entries      # create the catalog's entries (already existing ones are kept)
#   ./spire/register.sh check        # compare the server's entries with the catalog
#   ./spire/register.sh join-token   # print a one-time join token for NODE_ID
#   ./spire/register.sh show         # list the server's entries
# Defaults fit deploy/compose; override with
#   SPIRE_COMPOSE   the docker compose command for the stack
#   SPIRE_SERVER    how to run spire-server (default: inside the spire-server service)
#   SVID_BROKER     how to run svid-broker (default: the broker image, catalog mounted)
#   CATALOG         the catalog file as SVID_BROKER sees it (default: /etc/svid-broker/broker.yaml)
#   NODE_ID         the node alias the join token gives the agent
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
COMPOSE=${SPIRE_COMPOSE:-"docker compose -f $HERE/../deploy/compose/docker-compose.yml"}
SERVER=${SPIRE_SERVER:-"$COMPOSE exec -T spire-server /opt/spire/bin/spire-server"}
BROKER=${SVID_BROKER:-"$COMPOSE run --rm --no-deps -T --entrypoint node broker-1 dist/src/cli/main.js"}
CATALOG=${CATALOG:-/etc/svid-broker/broker.yaml}
NODE_ID=${NODE_ID:-spiffe://example.org/node/compose-host}

case "${1:-}" in
  entries)
    # SPIRE refuses an entry that exists already (same parent, SPIFFE ID and selectors): that is fine.
    out=$($BROKER spire entries --catalog "$CATALOG" | $SERVER entry create -data - 2>&1) || {
      if printf '%s\n' "$out" | grep -q 'Error' && ! printf '%s\n' "$out" | grep 'Error' | grep -qv 'similar entry already exists'; then
        echo "register: existing entries kept"
      else
        printf '%s\n' "$out" >&2
        exit 1
      fi
    }
    printf '%s\n' "$out" ;;
  check)
    tmp=$(mktemp)
    $SERVER entry show -output json > "$tmp"
    $BROKER spire check --catalog "$CATALOG" --entries /dev/stdin < "$tmp"
    rm -f "$tmp" ;;
  join-token)
    $SERVER token generate -spiffeID "$NODE_ID" -ttl 600 | sed -n 's/^Token: *//p' ;;
  show)
    $SERVER entry show ;;
  *)
    echo "usage: $0 entries | check | join-token | show" >&2
    exit 2 ;;
esac
