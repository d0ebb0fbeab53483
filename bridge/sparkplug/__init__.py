"""Sparkplug B: readings from edge nodes and PLC gateways, and the bridge as an edge node."""

from bridge.sparkplug._codec import decode_payload, encode_payload
from bridge.sparkplug._types import (
    NAMESPACE,
    InvalidSparkplugPayload,
    InvalidSparkplugTopic,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
)
from bridge.sparkplug._values import (
    NUMERIC_TYPES,
    DataType,
    ValueField,
    WireValue,
    as_number,
    decode_value,
    encode_value,
)

__all__ = [
    "NAMESPACE",
    "NUMERIC_TYPES",
    "DataType",
    "InvalidSparkplugPayload",
    "InvalidSparkplugTopic",
    "MessageType",
    "Metric",
    "Payload",
    "SparkplugTopic",
    "ValueField",
    "WireValue",
    "as_number",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "encode_value",
]
