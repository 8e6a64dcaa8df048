"""Triton's REST JSON of a KServe protobuf message: the reference the REST binding is held to.

Every field present (unset ones at their defaults), 64-bit integers as numbers, enums by name,
maps as objects (keys sorted), as Triton writes its REST answers (perf_analyzer reads `count`
and `ns` as integers). The server writes its JSON from the data plane's values instead
(`as_json`); tests compare the two.

    message_json(kv2.ModelStatistics(name="m"))["inference_stats"]["queue"]   # {"count": 0, ...}
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def message_json(message: Message) -> dict[str, Any]:
    """A message as Triton's REST JSON: every field, 64-bit integers as numbers, enums by name."""
    return {field.name: _field_json(message, field) for field in message.DESCRIPTOR.fields}


# Descriptors typed Any: the stubs name a Python class the upb runtime does not use.
def _field_json(message: Message, field: Any) -> Any:
    value = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        # Sorted: protobuf maps keep no order.
        return {key: _value_json(value_field, value[key]) for key in sorted(value)}
    if field.is_repeated:
        return [_value_json(field, item) for item in value]
    return _value_json(field, value)


def _value_json(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.decode("utf-8", errors="replace")
    return value
