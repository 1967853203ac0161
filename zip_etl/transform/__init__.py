"""The cleaning transform: pandas on Arrow, free of Dagster and SQL. The rules are in `rules.py`, each once,
with its examples; `cleaning.clean_companies` runs them."""

from zip_etl.transform.cleaning import (
    CLEANED_COLUMNS,
    RAW_COLUMNS,
    REJECTION_REASONS,
    CleaningResult,
    clean_companies,
    downcast,
    frame_bytes,
    partition_stats,
)

__all__ = [
    "CLEANED_COLUMNS",
    "RAW_COLUMNS",
    "REJECTION_REASONS",
    "CleaningResult",
    "clean_companies",
    "downcast",
    "frame_bytes",
    "partition_stats",
]
