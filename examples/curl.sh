#!/usr/bin/env bash
# The REST gateway and Connect with nothing but curl (and node to read ids out of the JSON).
#
#   BASE_URL=http://localhost:8080 SERVICE_TOKEN=… SESSION_ID=… USER_ID=… bash examples/curl.sh
#
# SERVICE_TOKEN: one of the server's SERVICE_TOKENS (credits need an admin or a service).
# SESSION_ID and USER_ID: a session of that user, e.g. from
#   node apps/server/dist/cli.js session mint --user-id user_1 --user-type customer
set -euo pipefail
BASE_URL="${BASE_URL:-http://localhost:8080}"
REST="$BASE_URL/bridge-payment/account-balance"
: "${SERVICE_TOKEN:?set SERVICE_TOKEN}" "${SESSION_ID:?set SESSION_ID}" "${USER_ID:?set USER_ID}"
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(eval("JSON.parse(s)"+process.argv[1])))' "$1"; }

echo "# create a balance for $USER_ID (as a service)"
created=$(curl -sS -X POST "$REST" \
  -H "Authorization: Bearer $SERVICE_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"user_id\": \"$USER_ID\", \"balance_type\": \"credits\", \"currency\": \"EUR\", \"metadata\": {\"source\": \"curl\"}}")
echo "$created"
id=$(echo "$created" | json .data.id)

echo "# credit 1000 (as a service), with an Idempotency-Key: repeating it changes nothing"
for _ in 1 2; do
  curl -sS -X POST "$REST/$id/credit" \
    -H "Authorization: Bearer $SERVICE_TOKEN" -H 'Content-Type: application/json' -H "Idempotency-Key: curl-credit-$id" \
    -d '{"amount_cents": 1000, "description": "top up"}'
  echo
done

echo "# debit 250 (as the owner)"
curl -sS -X POST "$REST/$id/debit" \
  -H "X-Session-ID: $SESSION_ID" -H 'Content-Type: application/json' \
  -d '{"amount_cents": 250}'
echo

echo "# my balances"
curl -sS "$REST/me/balances?limit=10&currency=EUR" -H "X-Session-ID: $SESSION_ID"
echo

echo "# the same balance over Connect (JSON over HTTP/1.1)"
curl -sS "$BASE_URL/accountbalance.v1.AccountBalanceService/GetBalance" \
  -H "X-Session-ID: $SESSION_ID" -H 'Content-Type: application/json' -d "{\"id\": \"$id\"}"
echo

echo "# a debit beyond the balance is refused"
curl -sS -X POST "$REST/$id/debit" \
  -H "X-Session-ID: $SESSION_ID" -H 'Content-Type: application/json' \
  -d '{"amount_cents": 100000}' -w '\nHTTP %{http_code}\n'
