BASE=${BASE:-http://127.0.0.1:8000}
curl -s "$BASE/healthz"; echo
curl -s "$BASE/readyz"; echo
