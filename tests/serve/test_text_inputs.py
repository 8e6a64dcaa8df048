"""Request inputs for text models: text is tokenized per version; the wrong kind is refused."""

from __future__ import annotations

import numpy as np
import pytest

from onyx.contract.errors import InvalidInput, LimitExceeded, ServeError
from onyx.contract.text import PAD, UNK, TextEncoder, Vocabulary
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import InputLimits
from onyx.serve.inputs import decode_inputs
from tests.serve.tiny_models import text_config

LIMITS = InputLimits(max_text_chars=1000)
TEXT_CONFIG = text_config("sentiment", max_length=4)  # read only: decoding never changes it


def image_config() -> pb.ModelConfig:
    return pb.ModelConfig(
        name="digits",
        task=pb.TASK_IMAGE,
        labels=["0", "1"],
        input=pb.TensorSpec(name="input", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 1, 4, 4]),
        output=pb.TensorSpec(name="logits", dtype=pb.DATA_TYPE_FLOAT32, dims=[-1, 2]),
        output_activation=pb.ACTIVATION_SOFTMAX,
    )


ENCODER = TextEncoder(Vocabulary([PAD, UNK, "not", "bad"]), max_length=4)


def test_texts_become_one_padded_batch() -> None:
    inputs = [api.Input(text="Not bad"), api.Input(text="bad bad bad bad bad"), api.Input(text="")]
    batch = decode_inputs(inputs, TEXT_CONFIG, LIMITS, ENCODER)
    assert batch.dtype == np.int64
    assert batch.tolist() == [[2, 3, 0, 0], [3, 3, 3, 3], [1, 0, 0, 0]]


def test_image_bytes_to_a_text_model_is_invalid_and_says_send_text() -> None:
    with pytest.raises(
        InvalidInput, match=r"input 1: is image but model 'sentiment' is a text model"
    ):
        decode_inputs(
            [api.Input(text="ok"), api.Input(image=b"\x89PNG")], TEXT_CONFIG, LIMITS, ENCODER
        )


def test_text_to_an_image_model_is_invalid_and_says_send_image() -> None:
    expected = r"input 0: is text but model 'digits' is an image model"
    with pytest.raises(InvalidInput, match=expected):
        decode_inputs([api.Input(text="a cat")], image_config(), LIMITS)


def test_too_long_text_names_the_limit() -> None:
    with pytest.raises(LimitExceeded, match="max_text_chars"):
        decode_inputs([api.Input(text="x" * 1001)], TEXT_CONFIG, LIMITS, ENCODER)


def test_pretokenized_ids_outside_the_vocabulary_are_refused() -> None:
    good = api.Tensor(shape=[2], data=np.array([2, 3], dtype="<i8").tobytes())
    assert decode_inputs([api.Input(tensor=good)], TEXT_CONFIG, LIMITS, ENCODER).tolist() == [
        [2, 3]
    ]
    bad = api.Tensor(shape=[2], data=np.array([2, 99], dtype="<i8").tobytes())
    with pytest.raises(InvalidInput, match="input 0: token ids"):
        decode_inputs([api.Input(tensor=bad)], TEXT_CONFIG, LIMITS, ENCODER)


def test_text_without_an_encoder_is_a_server_error() -> None:
    with pytest.raises(ServeError, match="no text encoder"):
        decode_inputs([api.Input(text="ok")], TEXT_CONFIG, LIMITS)
