"""Test mode's definitions folder: one instance of the cleaned_companies component on the sample
table, loaded as the `zip_etl_test` code location by zip_etl/testmode_definitions.py."""
