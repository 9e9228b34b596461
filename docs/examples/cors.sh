# Origins allowed to call the API from a browser: comma-separated ...
export HAYSTREAM_CORS_ORIGINS='https://app.example.com, http://localhost:5173'
# ... or a JSON list.
export HAYSTREAM_CORS_ORIGINS='["https://app.example.com", "http://localhost:5173"]'
# Only if the page sends cookies (fetch credentials: "include"); refused together with '*'.
export HAYSTREAM_CORS_ALLOW_CREDENTIALS=true
