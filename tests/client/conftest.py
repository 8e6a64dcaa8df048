"""Client tests talk to real servers: the serving tests' fixtures (a tiny repository, servers on
port 0)."""

from tests.serve.conftest import repo, start_server

__all__ = ["repo", "start_server"]
