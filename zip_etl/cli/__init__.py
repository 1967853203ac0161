"""The `zip-etl` command line."""
