"""Sparkplug B payloads to and from bytes, through the generated protobuf code.

The only module that touches ``_pb``: everything else speaks :class:`Payload`.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from bridge.sparkplug._pb import sparkplug_b_pb2 as _pb
from bridge.sparkplug._types import InvalidSparkplugPayload, Metric, Payload
from bridge.sparkplug._values import DataType, ValueField

__all__ = ["decode_payload", "encode_payload"]

_SCALAR_FIELDS = (
    ValueField.INT,
    ValueField.LONG,
    ValueField.FLOAT,
    ValueField.DOUBLE,
    ValueField.BOOLEAN,
    ValueField.STRING,
    ValueField.BYTES,
)


def encode_payload(payload: Payload) -> bytes:
    """The protobuf bytes of ``payload``; fields that are None are left out."""
    message = _pb.Payload()
    if payload.timestamp is not None:
        message.timestamp = payload.timestamp
    if payload.seq is not None:
        message.seq = payload.seq
    if payload.uuid is not None:
        message.uuid = payload.uuid
    if payload.body is not None:
        message.body = payload.body
    for metric in payload.metrics:
        _fill_metric(message.metrics.add(), metric)
    return message.SerializeToString()


def _fill_metric(out: _pb.Payload.Metric, metric: Metric) -> None:
    if metric.name is not None:
        out.name = metric.name
    if metric.alias is not None:
        out.alias = metric.alias
    if metric.timestamp is not None:
        out.timestamp = metric.timestamp
    if metric.datatype is not None:
        out.datatype = int(metric.datatype)
    if metric.is_historical:
        out.is_historical = True
    if metric.is_transient:
        out.is_transient = True
    if metric.is_null:
        out.is_null = True
    if metric.value is not None and metric.value_field in _SCALAR_FIELDS:
        setattr(out, metric.value_field.value, metric.value)


def decode_payload(data: bytes) -> Payload:
    """A :class:`Payload` from protobuf bytes; raises :class:`InvalidSparkplugPayload`."""
    message = _pb.Payload()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidSparkplugPayload(f"not a Sparkplug B payload: {exc}") from None
    return Payload(
        timestamp=message.timestamp if message.HasField("timestamp") else None,
        seq=message.seq if message.HasField("seq") else None,
        metrics=tuple(_read_metric(metric) for metric in message.metrics),
        uuid=message.uuid if message.HasField("uuid") else None,
        body=message.body if message.HasField("body") else None,
    )


def _read_metric(metric: _pb.Payload.Metric) -> Metric:
    which = metric.WhichOneof("value")
    field = ValueField(which) if which is not None else ValueField.NONE
    value = getattr(metric, which) if field in _SCALAR_FIELDS and which is not None else None
    datatype: DataType | int | None = None
    if metric.HasField("datatype"):
        try:
            datatype = DataType(metric.datatype)
        except ValueError:
            datatype = metric.datatype  # a type from a later specification: kept as the number
    return Metric(
        name=metric.name if metric.HasField("name") else None,
        alias=metric.alias if metric.HasField("alias") else None,
        timestamp=metric.timestamp if metric.HasField("timestamp") else None,
        datatype=datatype,
        value_field=field,
        value=value,
        is_historical=metric.is_historical,
        is_transient=metric.is_transient,
        is_null=metric.is_null,
    )
