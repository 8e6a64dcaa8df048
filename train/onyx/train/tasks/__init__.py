"""Tasks the engine trains: images (`image`) and texts (`text`); `registry` turns a config into
one, and `labelled` reads labelled test data through each task's own readers and the served
preprocessing, as the scorers need it (`onyx evaluate`, the variant gate)."""
