from __future__ import annotations

import numpy as np

from onyx.contract.scores import activate, top_k
from onyx.proto.v1 import model_config_pb2 as pb


def test_softmax_is_stable_and_sums_to_one() -> None:
    scores = activate(np.array([[1000.0, 1000.0, -1000.0]]), pb.ACTIVATION_SOFTMAX)
    np.testing.assert_allclose(scores, [[0.5, 0.5, 0.0]], atol=1e-7)


def test_sigmoid_and_identity() -> None:
    np.testing.assert_allclose(activate(np.array([[0.0]]), pb.ACTIVATION_SIGMOID), [[0.5]])
    np.testing.assert_allclose(activate(np.array([[3.0]]), pb.ACTIVATION_IDENTITY), [[3.0]])


def test_top_k_ranks_best_first_and_caps_k() -> None:
    ranked = top_k(np.array([0.1, 0.7, 0.2]), 5, ["a", "b", "c"])
    assert [(r.label, r.index) for r in ranked] == [("b", 1), ("c", 2), ("a", 0)]
    assert len(top_k(np.array([0.1, 0.7, 0.2]), 1, ["a", "b", "c"])) == 1
