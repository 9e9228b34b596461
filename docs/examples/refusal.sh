BASE=${BASE:-http://127.0.0.1:8000}
# A misspelt field: refused before any run starts, with the field named.
curl -s -w '\n%{http_code}\n' "$BASE/chat" \
  -H 'content-type: application/json' \
  -d '{"query": "What is streaming?", "api_key": "sk-your-key", "stream_mode": "fast"}'
