"""A second table for the component test (test_second_table.py): contacts with an email, cleaned by a
transform of their own. Its own package, so the transform's code version hashes this folder alone."""
