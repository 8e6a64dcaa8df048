"""Data tools shared by the tasks: splits, labelled test data as the server reads it, dedup."""
