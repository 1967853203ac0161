"""The cleaning transform: plain pandas, free of Dagster and SQL. Edit `cleaning.py` to change it."""

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
