"""Data sets and data tools that belong to no one task.

`splits` (the stratified split both tasks build on) and `dedup` (`onyx data dedup`) know no task;
`photos` (the real-photo transfer set) and `reviews` (the generated review corpus) build data
sets that the demo, the tests, bench/ and users train on. Nothing here imports a task: the tasks
build on it.
"""
