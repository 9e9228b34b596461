BASE=${BASE:-http://127.0.0.1:8000}
# Start a run: 201 Created at once, {"run_id": ..., "events_url": ...}; nothing waits for the model.
run=$(curl -s "$BASE/runs" -H 'content-type: application/json' \
  -d '{"query": "What is streaming?", "api_key": "sk-your-key"}' | sed 's/.*"run_id":"\([^"]*\)".*/\1/')
echo "$run"
# Read it: the same events and ids as POST /chat. No key, no body: a browser's EventSource can do this.
curl -sN "$BASE/runs/$run/events"
# Come back after event 37: only the events after it, from the same run.
curl -sN "$BASE/runs/$run/events" -H "Last-Event-ID: $run:37"
# Stop it (a running run ends at once with an error event of type cancelled): 204.
curl -s -o /dev/null -w '%{http_code}\n' -X DELETE "$BASE/runs/$run"
