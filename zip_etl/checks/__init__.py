"""Asset checks on the cleaned data."""
