"""The docs site's sources, and `python -m docs.gen_config`, which writes its configuration reference."""
