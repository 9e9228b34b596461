BASE=${BASE:-http://127.0.0.1:8000}
curl -sN "$BASE/chat" \
  -H 'content-type: application/json' \
  -d '{"query": "What is streaming?", "api_key": "sk-your-key"}'
