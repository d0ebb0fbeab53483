"""Sparkplug B: readings from edge nodes and PLC gateways, and the bridge as an edge node."""

from bridge.sparkplug._codec import decode_payload, encode_payload
from bridge.sparkplug._edge import SPC_FIELDS, SparkplugEdgeNode, SpcMetrics
from bridge.sparkplug._host import (
    HostEvent,
    InputRejected,
    ReadingReceived,
    RebirthRequested,
    SourceStatusChanged,
    SparkplugBinding,
    SparkplugHost,
    epoch_ms_to_datetime,
)
from bridge.sparkplug._inbound import Publish, SparkplugFilter, SparkplugInbound
from bridge.sparkplug._node import (
    BD_SEQ,
    REBIRTH,
    EdgeNodeMessages,
    Outgoing,
    is_rebirth_command,
    rebirth_command,
    to_epoch_ms,
)
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
    "BD_SEQ",
    "NAMESPACE",
    "NUMERIC_TYPES",
    "REBIRTH",
    "SPC_FIELDS",
    "DataType",
    "EdgeNodeMessages",
    "HostEvent",
    "InputRejected",
    "InvalidSparkplugPayload",
    "InvalidSparkplugTopic",
    "MessageType",
    "Metric",
    "Outgoing",
    "Payload",
    "Publish",
    "ReadingReceived",
    "RebirthRequested",
    "SourceStatusChanged",
    "SparkplugBinding",
    "SparkplugEdgeNode",
    "SparkplugFilter",
    "SparkplugHost",
    "SparkplugInbound",
    "SparkplugTopic",
    "SpcMetrics",
    "ValueField",
    "WireValue",
    "as_number",
    "decode_payload",
    "decode_value",
    "encode_payload",
    "encode_value",
    "epoch_ms_to_datetime",
    "is_rebirth_command",
    "rebirth_command",
    "to_epoch_ms",
]
