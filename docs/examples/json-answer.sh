BASE=${BASE:-http://127.0.0.1:8000}
curl -s -w '\n' "$BASE/chat" \
  -H 'content-type: application/json' -H 'accept: application/json' \
  -d '{"query": "What is streaming?", "api_key": "sk-your-key"}'
