"""Data sets and data tools that belong to no one task.

`splits` (the stratified split both tasks build on) and `dedup` (`onyx data dedup`) know no task;
`photos` (the real-photo transfer set) and `reviews` (the generated review corpus) build data
sets that the demo, the tests, bench/ and users train on; `labelled` reads labelled test data
through the tasks' own readers, as the scorers need it (`onyx evaluate`, the variant gate).
"""
