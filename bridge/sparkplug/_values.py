"""Metric data types and how a logical value maps onto the protobuf ``oneof value``.

Sparkplug puts Int8, Int16 and Int32 in the unsigned 32-bit ``int_value`` and Int64 in the
unsigned 64-bit ``long_value``, negative numbers as two's complement. Implementations differ
in the width they complement over (Eclipse Tahu's Java sign-extends to 32 bits, others mask to
the type's own width), so reading masks to the datatype's width first and accepts both.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum, StrEnum

from bridge.readings import text_fault

__all__ = [
    "NUMERIC_TYPES",
    "DataType",
    "ValueField",
    "WireValue",
    "as_number",
    "decode_value",
    "encode_value",
]

WireValue = int | float | bool | str | bytes

MAX_SPARKPLUG_TEXT_CHARS = 65_536
"""A String/Text metric longer than this is refused (a reading's payload limit is 64 KiB)."""


class DataType(IntEnum):
    """Metric data types (Sparkplug 3.0, section 6.4.16); names as in the specification."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


NUMERIC_TYPES = frozenset(
    {
        DataType.Int8,
        DataType.Int16,
        DataType.Int32,
        DataType.Int64,
        DataType.UInt8,
        DataType.UInt16,
        DataType.UInt32,
        DataType.UInt64,
        DataType.Float,
        DataType.Double,
    }
)
"""The data types whose values become SPC readings."""


class ValueField(StrEnum):
    """Which member of a metric's ``oneof value`` carried the value (``none``: no value)."""

    NONE = "none"
    INT = "int_value"
    LONG = "long_value"
    FLOAT = "float_value"
    DOUBLE = "double_value"
    BOOLEAN = "boolean_value"
    STRING = "string_value"
    BYTES = "bytes_value"
    DATASET = "dataset_value"
    TEMPLATE = "template_value"
    EXTENSION = "extension_value"


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}


def encode_value(datatype: DataType, value: WireValue) -> tuple[ValueField, WireValue]:  # noqa: C901  one branch per Sparkplug data type
    """The ``oneof`` field and its raw content for ``value`` of ``datatype``.

    Raises ``ValueError`` when the value does not fit the datatype (out of range, wrong
    Python type) or the datatype is one the bridge does not write (datasets, templates,
    arrays).
    """
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{datatype.name} needs an int, got {value!r}")
        if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
            raise ValueError(f"{value} is out of range for {datatype.name}")
        if datatype is DataType.Int64:
            return ValueField.LONG, value & 0xFFFF_FFFF_FFFF_FFFF
        return ValueField.INT, value & 0xFFFF_FFFF
    if datatype in _UNSIGNED_BITS:
        bits = _UNSIGNED_BITS[datatype]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{datatype.name} needs an int, got {value!r}")
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{value} is out of range for {datatype.name}")
        return (ValueField.LONG if bits == 64 else ValueField.INT), value
    if datatype is DataType.DateTime:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"DateTime needs epoch milliseconds, got {value!r}")
        return ValueField.LONG, value
    if datatype in (DataType.Float, DataType.Double):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{datatype.name} needs a number, got {value!r}")
        return (ValueField.FLOAT if datatype is DataType.Float else ValueField.DOUBLE), float(value)
    if datatype is DataType.Boolean:
        if not isinstance(value, bool):
            raise ValueError(f"Boolean needs a bool, got {value!r}")
        return ValueField.BOOLEAN, value
    if datatype in (DataType.String, DataType.Text, DataType.UUID):
        if not isinstance(value, str):
            raise ValueError(f"{datatype.name} needs a str, got {value!r}")
        return ValueField.STRING, value
    if datatype in (DataType.Bytes, DataType.File):
        if not isinstance(value, bytes):
            raise ValueError(f"{datatype.name} needs bytes, got {value!r}")
        return ValueField.BYTES, value
    raise ValueError(f"writing {datatype.name} values is not supported")


def decode_value(datatype: DataType, field: ValueField, raw: WireValue | None) -> WireValue:  # noqa: C901  one branch per Sparkplug data type
    """The logical value of a metric of ``datatype`` whose ``field`` held ``raw``.

    Raises ``ValueError`` with a short reason when the field does not suit the datatype.
    """
    if raw is None or field is ValueField.NONE:
        raise ValueError(f"{datatype.name} metric carries no value")
    if datatype in _SIGNED_BITS or datatype in _UNSIGNED_BITS or datatype is DataType.DateTime:
        if field not in (ValueField.INT, ValueField.LONG) or not isinstance(raw, int):
            raise ValueError(f"{datatype.name} metric carries {field.value}, not an integer")
        if datatype in _SIGNED_BITS:
            bits = _SIGNED_BITS[datatype]
            masked = raw & ((1 << bits) - 1)
            return masked - (1 << bits) if masked >> (bits - 1) else masked
        if datatype in _UNSIGNED_BITS:
            bits = _UNSIGNED_BITS[datatype]
            if raw >= 1 << bits:
                raise ValueError(f"{raw} is out of range for {datatype.name}")
        return raw
    if datatype in (DataType.Float, DataType.Double):
        if field not in (ValueField.FLOAT, ValueField.DOUBLE) or not isinstance(raw, float):
            raise ValueError(f"{datatype.name} metric carries {field.value}, not a float")
        return _shortest_float32(raw) if field is ValueField.FLOAT else raw
    expected = {
        DataType.Boolean: (ValueField.BOOLEAN,),
        DataType.String: (ValueField.STRING,),
        DataType.Text: (ValueField.STRING,),
        DataType.UUID: (ValueField.STRING,),
        DataType.Bytes: (ValueField.BYTES,),
        DataType.File: (ValueField.BYTES,),
    }.get(datatype)
    if expected is None:
        raise ValueError(f"reading {datatype.name} values is not supported")
    if field not in expected:
        raise ValueError(f"{datatype.name} metric carries {field.value}")
    if isinstance(raw, str):  # text from outside: the bridge's one check (bridge/readings.py)
        fault = text_fault(raw, f"{datatype.name} metric", MAX_SPARKPLUG_TEXT_CHARS)
        if fault is not None:
            raise ValueError(fault)
    return raw


def as_number(value: WireValue) -> float:
    """A decoded numeric value as a float (NaN and infinity raise ``ValueError``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _shortest_float32(raw: float) -> float:
    """The shortest decimal that is the same 32-bit float: a gauge's Float 10.1 arrives as
    10.100000381469727 and is read as 10.1 (what the gauge meant), not as the widened
    double."""
    if not math.isfinite(raw):
        return raw
    packed = struct.pack("<f", raw)
    for digits in range(6, 10):
        candidate = float(f"{raw:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return raw
