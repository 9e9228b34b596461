"""Shared test helpers, one module per concern (uvicorn's tests/utils.py is the model)."""
