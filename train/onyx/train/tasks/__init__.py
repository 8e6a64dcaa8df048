"""Tasks the engine trains: images (`image`) and texts (`text`); `registry` turns a config into
one."""
