"""The bridge's configuration: one TOML file, overridable by ``OPENSPC_...`` variables.

``load_settings(path)`` reads the file, lays the environment over it (the environment wins),
validates everything with pydantic and resolves paths relative to the file. Any mistake
raises :class:`ConfigInvalid` carrying one :class:`ConfigFault` per problem; each prints as
one line (``config/openspc.toml: characteristic[2].subgroup_size = 30: must be between 1 and
25``), never a traceback. docs/configuration.md lists every key.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import socket
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

import engine
from bridge.readings import compile_value_path
from bridge.wire.topics import DEFAULT_PREFIX, reading_topic
from engine.alarms import DEFAULT_ACTION_CODES, DEFAULT_CAUSE_CODES, DEFAULT_RUNNING_VALUES

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_REASON_CODES",
    "ENV_PREFIX",
    "MISSING",
    "BridgeSettings",
    "BrokerSettings",
    "CharacteristicSettings",
    "ConfigFault",
    "ConfigInvalid",
    "DatabaseSettings",
    "GatewaySettings",
    "Settings",
    "SparkplugEdgeSettings",
    "SparkplugHostSettings",
    "SparkplugSource",
    "format_faults",
    "load_settings",
]

DEFAULT_CONFIG_PATH: Final = Path("config/openspc.toml")
ENV_PREFIX: Final = "OPENSPC_"
DEFAULT_REASON_CODES: Final = DEFAULT_CAUSE_CODES  # the contract's list (engine/alarms)
DEFAULT_PARETO_DAYS: Final = 30
_DEFAULT_DB_URL: Final = "sqlite+aiosqlite:///openspc.db"
_ASYNC_DRIVERS: Final = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


# --- faults -------------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True, slots=True)
class ConfigFault:
    """One problem: where it came from (the file, or an environment variable), the dotted
    key (``characteristic[2].subgroup_size``; empty for the file as a whole), the value
    found (``MISSING`` when absent) and why it is wrong."""

    source: str
    key: str
    value: object
    why: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.key}" if self.key else self.source
        if self.value is MISSING:
            line = f"{where}: {self.why}"
        else:
            line = f"{where} = {_show_value(self.key, self.value)}: {self.why}"
        return line.replace("\r", "\\r").replace("\n", "\\n")  # always one line


class ConfigInvalid(Exception):
    """The configuration at ``path`` cannot be used; ``faults`` says why, one per problem."""

    def __init__(self, path: Path, faults: Sequence[ConfigFault]) -> None:
        self.path = path
        self.faults = tuple(faults)
        super().__init__(format_faults(self))


def format_faults(error: ConfigInvalid) -> str:
    """One line per fault, for the CLI to print to stderr before exiting with status 2."""
    return "\n".join(str(fault) for fault in error.faults)


def _show_value(key: str, value: object) -> str:
    if key.rsplit(".", 1)[-1] == "password" and value is not None:
        return '"***"'
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _KeyFaults(ValueError):
    """Raised by validators that check several fields together, to pin each fault on the
    field it concerns (pydantic would otherwise blame the whole table)."""

    def __init__(self, faults: Sequence[tuple[str | int, object, str]]) -> None:
        self.faults = tuple(faults)
        super().__init__("; ".join(why for _, _, why in faults))


def _raise_if(faults: Sequence[tuple[str | int, object, str]]) -> None:
    if faults:
        raise _KeyFaults(faults)


# --- field checks ---------------------------------------------------------------------------


def _finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")


def _between(low: float, high: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        _finite(value)
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return check


def _at_least(low: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        _finite(value)
        if value < low:
            raise ValueError(f"must be at least {low:g}")
        return value

    return check


def _positive(value: float) -> float:
    _finite(value)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _mqtt_name(value: str) -> str:
    """A single topic level (Sparkplug ids): no '/', '+' or '#'."""
    _not_blank(value)
    if any(c in value for c in "/+#"):
        raise ValueError("must not contain '/', '+' or '#'")
    return value


def _topic(value: str) -> str:
    """A concrete topic to publish to or subscribe to: no wildcards."""
    _not_blank(value)
    if "+" in value or "#" in value:
        raise ValueError("must not contain the wildcards '+' or '#'")
    if value.startswith("$"):
        raise ValueError("must not start with '$' (reserved for the broker)")
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    return value


def _prefix(value: str) -> str:
    _topic(value)
    if value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError("must not start or end with '/' or contain an empty level")
    return value


_PATH_FIELDS: Final = frozenset(("password_file", "users_file"))
"""Fields of type Path (given as text in TOML and in the environment)."""

Port = Annotated[int, AfterValidator(_between(1, 65535))]
Name = Annotated[str, AfterValidator(_not_blank)]
MqttName = Annotated[str, AfterValidator(_mqtt_name)]
Topic = Annotated[str, AfterValidator(_topic)]


class _Section(BaseModel):
    """Every table of the file: unknown keys refused, types strict (``port = "1883"`` is a
    fault, not 1883; docs/configuration.md, "Types"). An ``OPENSPC_...`` variable is text:
    :func:`_env_scalars` reads a number or true/false in it before validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _path_from_text(cls, value: Any, info: ValidationInfo) -> Any:
        # strict mode takes no str for a Path; a TOML file can only give a string
        if isinstance(value, str) and info.field_name in _PATH_FIELDS:
            return Path(value)
        return value


# --- sections -------------------------------------------------------------------------------


class BrokerSettings(_Section):
    """``[broker]``: the MQTT broker the bridge connects to."""

    host: Name = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    client_id: Name = "openspc-bridge"
    tls: bool = False
    keepalive: Annotated[int, AfterValidator(_between(5, 65535))] = 30

    @model_validator(mode="after")
    def _one_password(self) -> BrokerSettings:
        if self.password is not None and self.password_file is not None:
            _raise_if(
                [("password_file", str(self.password_file), "give password or password_file")]
            )
        return self


class DatabaseSettings(_Section):
    """``[database]``: any SQLAlchemy URL; plain ``sqlite://`` and ``postgresql://`` get the
    async drivers (aiosqlite, asyncpg). A relative SQLite path is relative to the config
    file's directory."""

    url: str = _DEFAULT_DB_URL

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        yield "url", self.display_url

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _database_url(value)


def _database_url(value: str, base_dir: Path | None = None) -> str:
    """``value`` checked, with the async driver named; with ``base_dir``, a relative SQLite
    path made absolute against it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError(
            "not a database URL (like sqlite+aiosqlite:///openspc.db"
            " or postgresql+asyncpg://user@host/db)"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    if not driver and backend in _ASYNC_DRIVERS:
        url = url.set(drivername=_ASYNC_DRIVERS[backend])
    elif backend == "sqlite" and driver != "aiosqlite":
        raise ValueError("SQLite needs the async driver: sqlite+aiosqlite:///...")
    elif backend == "postgresql" and driver not in {"asyncpg", "psycopg"}:
        raise ValueError("PostgreSQL needs an async driver: postgresql+asyncpg://...")
    elif backend not in {"sqlite", "postgresql"}:
        raise ValueError("only SQLite and PostgreSQL are supported")
    if backend == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
            url = url.set(database=str(path.resolve()))
    return url.render_as_string(hide_password=False)


class SparkplugEdgeSettings(_Section):
    """``[bridge.sparkplug_edge]``: also publish results as a Sparkplug B edge node."""

    enabled: bool = False
    group: MqttName = "OpenSPC"
    edge: MqttName = "Bridge"


class SparkplugHostSettings(_Section):
    """``[bridge.sparkplug]``: with ``host_id``, the bridge is a Sparkplug 3.0 Primary Host
    Application (``spBv1.0/STATE/<host_id>``; docs/sparkplug.md)."""

    host_id: MqttName | None = None


class BridgeSettings(_Section):
    """``[bridge]``: topics, acknowledgement reasons, and the bridge's own limits."""

    topic_prefix: Annotated[str, AfterValidator(_prefix)] = DEFAULT_PREFIX
    # the acknowledgement workflow (docs/configuration.md, "Acknowledgements");
    # ``reason_codes`` is the old name of ``cause_codes`` and still read
    cause_codes: list[Name] = Field(
        default_factory=lambda: list(DEFAULT_CAUSE_CODES),
        validation_alias=AliasChoices("cause_codes", "reason_codes"),
    )
    action_codes: list[Name] = Field(default_factory=lambda: list(DEFAULT_ACTION_CODES))
    require_action: bool = False
    pareto_days: Annotated[int, AfterValidator(_between(1, 3650))] = DEFAULT_PARETO_DAYS
    history_size: Annotated[int, AfterValidator(_between(1, 10_000))] = 100
    max_payload_bytes: Annotated[int, AfterValidator(_between(16, 268_435_455))] = 65536
    metrics_interval: Annotated[float, AfterValidator(_positive)] = 5.0
    batch_max: Annotated[int, AfterValidator(_at_least(1))] = 1000
    batch_ms: Annotated[float, AfterValidator(_at_least(0))] = 0.0  # 0: group commit
    # at least this long between two batches unless one is full (bridge/_group_commit.py)
    commit_interval_ms: Annotated[float, AfterValidator(_between(0, 1000))] = 0.0
    # 10,000: a second or more of readings at plant rates; the broker's session holds the
    # rest (with 100,000 an overloaded bridge held ~30 MB more; docs/performance.md)
    buffer_max: Annotated[int, AfterValidator(_at_least(1))] = 10_000
    # history bytes a second, all characteristics together (docs/bridge.md, "history")
    history_budget: Annotated[int, AfterValidator(_at_least(1000))] = 1_000_000
    # QoS 1 publishes not yet taken by the broker before the pipeline waits
    outbound_max: Annotated[int, AfterValidator(_at_least(100))] = 10_000
    # the lean inbound path: PUBLISH/PUBACK split by the bridge itself, not paho
    # (bridge/_mqtt_codec.py; docs/performance.md "The lean MQTT codec")
    lean_inbound: bool = True
    # the lean outbound path: PUBLISH packets built by the bridge, a loop turn's in one send
    # (bridge/_mqtt_out.py; docs/performance.md "The lean outbound writer")
    lean_publish: bool = True
    # readings, results and retained history on three connections of their own
    # (bridge/_split_link.py; docs/bridge.md "Three connections"); false: one connection
    split_connections: bool = True
    sparkplug_edge: SparkplugEdgeSettings = Field(default_factory=SparkplugEdgeSettings)
    sparkplug: SparkplugHostSettings = Field(default_factory=SparkplugHostSettings)
    rebirth_on_gap: bool = True
    # the roles.json `openspc users` keeps beside the password file: each user's retained
    # role message (docs/topics.md, "Role"); relative to the config file's directory
    users_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_name_of_cause_codes(cls, data: Any) -> Any:
        if isinstance(data, dict) and "reason_codes" in data and "cause_codes" in data:
            raise _KeyFaults(
                [
                    (
                        "reason_codes",
                        data["reason_codes"],
                        "is the old name of cause_codes: give one of them, not both",
                    )
                ]
            )
        return data

    @field_validator("cause_codes", "action_codes")
    @classmethod
    def _check_codes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one code")
        seen: set[str] = set()
        for code in value:
            if code in seen:
                raise ValueError(f"lists {code!r} twice")
            seen.add(code)
        return value

    @property
    def reason_codes(self) -> list[str]:
        """``cause_codes`` by its old name (``meta.reason_codes``, docs/topics.md)."""
        return self.cause_codes


def _default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterSettings(_Section):
    """``[cluster]``: several bridges as one (docs/scale-out.md). PostgreSQL only."""

    enabled: bool = False
    node: MqttName = Field(default_factory=_default_node)
    partitions: Annotated[int, AfterValidator(_between(1, 1024))] = 16
    lease_seconds: Annotated[float, AfterValidator(_between(2, 3600))] = 6.0


class GatewaySettings(_Section):
    """``[gateway]``: ``openspc gateway``, OpenSPC's WebSocket API fed from the broker
    (docs/gateway.md). It reads from the ``[broker]`` table's host and port; without a
    ``username`` it connects anonymously (never with the bridge's own credentials)."""

    host: Name = "127.0.0.1"
    port: Port = 8000
    idle_timeout: Annotated[float, AfterValidator(_between(1, 86_400))] = 90.0
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    client_queue_bytes: Annotated[int, AfterValidator(_at_least(4096))] = 1_048_576
    replay_max: Annotated[int, AfterValidator(_between(0, 10_000))] = 100
    max_clients: Annotated[int, AfterValidator(_at_least(1))] = 10_000

    @model_validator(mode="after")
    def _one_password(self) -> GatewaySettings:
        faults: list[tuple[str | int, object, str]] = []
        if self.password is not None and self.password_file is not None:
            faults.append(
                ("password_file", str(self.password_file), "give password or password_file")
            )
        if self.username is None and (self.password is not None or self.password_file is not None):
            faults.append(("username", MISSING, "required with a password (or leave both out)"))
        _raise_if(faults)
        return self


class SparkplugSource(_Section):
    """``sparkplug = {group, edge, device, metric}``: a characteristic fed by a Sparkplug B
    metric; ``device`` left out for a node-level metric (NBIRTH/NDATA)."""

    group: MqttName
    edge: MqttName
    device: MqttName | None = None
    metric: Name


RulesInput = str | list[int | dict[str, Any]]


def _resolve_rules(rules: RulesInput) -> tuple[engine.RuleConfig, ...]:
    """The engine's reading of a ``rules`` value; ValueError when it is not valid."""
    return engine.resolve_rules(rules)


_CHART_KEYS: Final[Mapping[str, str]] = {
    "ewma_lambda": "lambda",
    "ewma_l": "L",
    "cusum_k": "k",
    "cusum_h": "h",
}
"""The engine's names of the chart settings -> their TOML keys (docs/configuration.md)."""


class CharacteristicSettings(_Section):
    """One ``[[characteristic]]``: a measured quantity and how to chart it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    id: Annotated[int, AfterValidator(_at_least(1))]
    name: Name
    unit: str | None = None
    topic: Topic | None = None
    value_path: str | None = None
    subgroup_size: Annotated[int, AfterValidator(_between(1, 25))] = 1
    usl: float | None = None
    lsl: float | None = None
    target: float | None = None
    center_line: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    baseline: Annotated[int, AfterValidator(_between(1, 100_000))] = 25
    rules: RulesInput | None = None
    """None: the chart family's default (``nelson`` for imr/xbar_r/xbar_s, rule 1 for the
    others; docs/spc.md)."""
    sparkplug: SparkplugSource | None = None
    # pins the characteristic to a cluster partition (docs/scale-out.md)
    partition: Annotated[int, AfterValidator(_at_least(0))] | None = None
    # the chart family and its settings (docs/configuration.md, "Chart families"); the TOML
    # keys are those of docs/spc.md (lambda, L, k, h), the longer names are accepted too
    chart: str | None = None
    inspected: int | None = None
    ewma_lambda: float = Field(default=0.2, alias="lambda")
    ewma_l: float = Field(default=3.0, alias="L")
    cusum_k: float = Field(default=0.5, alias="k")
    cusum_h: float = Field(default=5.0, alias="h")
    # the alarm workflow (docs/configuration.md, "Alarms: spec, valid range, sample due")
    valid_min: float | None = None
    valid_max: float | None = None
    sample_interval: Annotated[float, AfterValidator(_positive)] | None = None
    overdue_grace: Annotated[float, AfterValidator(_at_least(0))] | None = None
    running_topic: Topic | None = None
    running_values: list[Name] = Field(default_factory=lambda: list(DEFAULT_RUNNING_VALUES))
    spec_severity: engine.Severity = engine.Severity.CRITICAL
    overdue_severity: engine.Severity = engine.Severity.WARNING

    @field_validator("spec_severity", "overdue_severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        # strict mode takes no str for an enum; a TOML file can only give a string
        if isinstance(value, str) and value in engine.Severity.__members__:
            return engine.Severity(value)
        if isinstance(value, engine.Severity):
            return value
        raise ValueError('must be "CRITICAL" or "WARNING"')

    @field_validator("running_values")
    @classmethod
    def _check_running_values(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must list at least one value")
        return [v.strip() for v in value]

    @field_validator("value_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None:
            compile_value_path(value)
        return value

    @field_validator("rules")
    @classmethod
    def _check_rules(cls, value: RulesInput | None) -> RulesInput | None:
        if value is None:
            return value
        try:
            _resolve_rules(value)
        except ValueError as exc:
            # "rules[2]: rule id must be ..." -> key characteristic[i].rules[2]
            head, sep, rest = str(exc).partition(": ")
            if sep and head.startswith("rules[") and head.endswith("]") and head[6:-1].isdigit():
                index = int(head[6:-1])
                item = value[index] if isinstance(value, list) and index < len(value) else MISSING
                raise _KeyFaults([(index, item, rest)]) from None
            raise
        return value

    @field_validator("usl", "lsl", "target", "center_line", "ucl", "lcl", "valid_min", "valid_max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CharacteristicSettings:  # noqa: C901  one check per documented rule, each its own fault line
        faults: list[tuple[str | int, object, str]] = []
        if self.usl is not None and self.lsl is not None and not self.lsl < self.usl:
            faults.append(("lsl", self.lsl, f"must be below usl ({self.usl:g})"))
        if self.target is not None:
            if self.usl is not None and self.target > self.usl:
                faults.append(("target", self.target, f"must not be above usl ({self.usl:g})"))
            if self.lsl is not None and self.target < self.lsl:
                faults.append(("target", self.target, f"must not be below lsl ({self.lsl:g})"))
        faults += self._alarm_faults()
        if (self.ucl is None) != (self.lcl is None):
            given, missing = ("ucl", "lcl") if self.lcl is None else ("lcl", "ucl")
            faults.append((missing, MISSING, f"fixed limits need both ucl and lcl ({given} given)"))
        elif self.ucl is not None and self.lcl is not None:
            if not self.lcl < self.ucl:
                faults.append(("lcl", self.lcl, f"must be below ucl ({self.ucl:g})"))
            elif self.center_line is not None and not self.lcl < self.center_line < self.ucl:
                faults.append(
                    (
                        "center_line",
                        self.center_line,
                        f"must lie between lcl ({self.lcl:g}) and ucl ({self.ucl:g})",
                    )
                )
        elif self.center_line is not None:
            faults.append(("center_line", self.center_line, "fixed limits also need ucl and lcl"))
        family = engine.FAMILIES.get(self.chart_name)
        if (
            family is not None
            and family.kind != "attribute"
            and self.subgroup_size == 1
            and self.baseline < 2
            and self.ucl is None
        ):
            faults.append(
                ("baseline", self.baseline, "must be at least 2 for individuals (a moving range)")
            )
        if not faults:
            faults += self._chart_faults()
        if self.sparkplug is not None and self.chart in ("p", "np", "u"):
            faults.append(
                (
                    "sparkplug",
                    self.sparkplug.model_dump(exclude_none=True),
                    f"a {self.chart} chart needs two numbers a sample, a Sparkplug metric is one"
                    " (feed it from a topic)",
                )
            )
        if self.sparkplug is not None and self.topic is not None:
            faults.append(("topic", self.topic, "give topic or sparkplug, not both"))
        if self.sparkplug is not None and self.value_path is not None:
            faults.append(("value_path", self.value_path, "does not apply to a sparkplug source"))
        elif self.topic is None and self.value_path is not None:
            faults.append(
                ("value_path", self.value_path, "needs a topic (it applies to the own topic only)")
            )
        _raise_if(faults)
        return self

    def _alarm_faults(self) -> list[tuple[str | int, object, str]]:
        """The alarm keys that only make sense together (docs/configuration.md)."""
        faults: list[tuple[str | int, object, str]] = []
        low, high = self.valid_min, self.valid_max
        if low is not None and high is not None and not low < high:
            faults.append(("valid_min", low, f"must be below valid_max ({high:g})"))
        for key in ("usl", "lsl", "target"):
            limit = getattr(self, key)
            if limit is None:
                continue
            if low is not None and limit < low:
                faults.append((key, limit, f"lies below valid_min ({low:g})"))
            elif high is not None and limit > high:
                faults.append((key, limit, f"lies above valid_max ({high:g})"))
        if self.sample_interval is None:
            if self.overdue_grace is not None:
                faults.append(("overdue_grace", self.overdue_grace, "needs a sample_interval"))
            if self.running_topic is not None:
                faults.append(("running_topic", self.running_topic, "needs a sample_interval"))
        return faults

    @property
    def chart_name(self) -> str:
        """``chart``, or the variables chart the subgroup size implies (engine.default_chart)."""
        return self.chart if self.chart is not None else engine.default_chart(self.subgroup_size)

    def _chart_faults(self) -> list[tuple[str | int, object, str]]:
        """The engine's check of the chart settings (engine.chart_faults), each fault on
        its TOML key."""
        return [
            (_CHART_KEYS.get(f.key, f.key), f.value, f.reason)
            for f in engine.chart_faults(self.to_spec())
        ]

    def reading_topic(self, topic_prefix: str) -> str:
        """Where a gauge of this characteristic publishes: its own ``topic`` if it has one,
        otherwise ``<prefix>/char/<id>/reading``."""
        return self.topic or reading_topic(topic_prefix, self.id)

    def to_spec(self) -> engine.CharacteristicSpec:
        """What the engine needs. Fixed limits without a ``center_line`` get the midpoint
        (to 10 significant digits, as every computed figure; engine.figure)."""
        center = self.center_line
        if center is None and self.ucl is not None and self.lcl is not None:
            # a computed figure: (10.7 + 9.1) / 2 is 9.899999999999999, published as 9.9
            center = engine.figure((self.ucl + self.lcl) / 2)
        return engine.CharacteristicSpec(
            id=self.id,
            subgroup_size=self.subgroup_size,
            usl=self.usl,
            lsl=self.lsl,
            target=self.target,
            center_line=center,
            ucl=self.ucl,
            lcl=self.lcl,
            baseline=self.baseline,
            **({} if self.rules is None else {"rules": _resolve_rules(self.rules)}),
            chart=self.chart,
            inspected=self.inspected,
            ewma_lambda=self.ewma_lambda,
            ewma_l=self.ewma_l,
            cusum_k=self.cusum_k,
            cusum_h=self.cusum_h,
        )


class Settings(BaseSettings):
    """Everything the bridge is told. Build it with :func:`load_settings` (the file, with the
    environment over it). Built directly, ``Settings(broker={...})`` reads ``OPENSPC_...``
    variables for what the arguments leave out (arguments win), and resolves no paths."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment's text read as the strict types want it, as load_settings does
        return (init_settings, _TypedEnvSource(settings_cls), dotenv_settings, file_secret_settings)

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    characteristic: list[CharacteristicSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _characteristics_fit_together(self) -> Settings:  # noqa: C901  one check per documented rule
        faults: list[tuple[str | int, object, str]] = []
        first_with_id: dict[int, int] = {}
        by_topic: dict[str, list[int]] = {}
        first_with_metric: dict[SparkplugSource, int] = {}
        prefix = self.bridge.topic_prefix
        for index, char in enumerate(self.characteristic):
            if char.id in first_with_id:
                other = first_with_id[char.id]
                faults.append(
                    (f"{index}.id", char.id, f"duplicate id (also characteristic[{other}])")
                )
            else:
                first_with_id[char.id] = index
            if char.sparkplug is not None:
                faults.extend(self._sparkplug_faults(index, char.sparkplug, first_with_metric))
            if char.topic is None:
                continue
            own = reading_topic(prefix, char.id)
            if char.topic.startswith(f"{prefix}/") and char.topic != own:
                faults.append(
                    (
                        f"{index}.topic",
                        char.topic,
                        f"must not lie under the bridge's own {prefix}/ topics",
                    )
                )
            if char.topic.startswith("spBv1.0/"):
                faults.append(
                    (f"{index}.topic", char.topic, "for Sparkplug B use sparkplug = {...}")
                )
            by_topic.setdefault(char.topic, []).append(index)
        for indexes in by_topic.values():
            if len(indexes) < 2:
                continue
            first_with_path: dict[str | None, int] = {}
            for index in indexes:
                char = self.characteristic[index]
                other = first_with_path.setdefault(char.value_path, index)
                if char.value_path is None:
                    other = next(i for i in indexes if i != index)
                elif other == index:
                    continue
                faults.append(
                    (
                        f"{index}.topic",
                        char.topic,
                        f"shared with characteristic[{other}]:"
                        " characteristics may share a topic only with a different value_path each",
                    )
                )
        faults += self._partition_faults()
        faults += self._running_topic_faults(by_topic)
        if faults:
            raise _KeyFaults([(f"characteristic.{key}", value, why) for key, value, why in faults])
        self._cluster_needs_postgres()
        return self

    def _partition_faults(self) -> list[tuple[str | int, object, str]]:
        """A pinned partition must exist, and an edge node's characteristics share one."""
        faults: list[tuple[str | int, object, str]] = []
        count = self.cluster.partitions
        lowest: dict[tuple[str, str], CharacteristicSettings] = {}
        for char in sorted(self.characteristic, key=lambda c: c.id):
            if char.sparkplug is not None:
                lowest.setdefault((char.sparkplug.group, char.sparkplug.edge), char)
        for index, char in enumerate(self.characteristic):
            if char.partition is None:
                continue
            if char.partition >= count:
                why = f"must be below cluster.partitions ({count})"
                faults.append((f"{index}.partition", char.partition, why))
                continue
            first = (
                lowest.get((char.sparkplug.group, char.sparkplug.edge)) if char.sparkplug else None
            )
            if first is not None and first.id != char.id:
                why = (
                    "an edge node's characteristics share the partition of its lowest id"
                    f" ({first.id}): pin that one"
                )
                faults.append((f"{index}.partition", char.partition, why))
        return faults

    def _cluster_needs_postgres(self) -> None:
        if self.cluster.enabled and self.database.url.startswith("sqlite"):
            why = "a cluster needs PostgreSQL (database.url is SQLite; docs/scale-out.md)"
            _raise_if([("cluster.enabled", True, why)])

    def _running_topic_faults(
        self, by_topic: Mapping[str, list[int]]
    ) -> list[tuple[str | int, object, str]]:
        """A running topic is a line's state, never a reading topic or one of the bridge's."""
        faults: list[tuple[str | int, object, str]] = []
        prefix = self.bridge.topic_prefix
        for index, char in enumerate(self.characteristic):
            topic = char.running_topic
            if topic is None:
                continue
            if topic.startswith((f"{prefix}/", "spBv1.0/")):
                faults.append(
                    (f"{index}.running_topic", topic, f"must not lie under {prefix}/ or spBv1.0/")
                )
            elif topic in by_topic:
                other = by_topic[topic][0]
                faults.append(
                    (
                        f"{index}.running_topic",
                        topic,
                        f"is the reading topic of characteristic[{other}]",
                    )
                )
        return faults

    def _sparkplug_faults(
        self, index: int, source: SparkplugSource, first_with_metric: dict[SparkplugSource, int]
    ) -> list[tuple[str | int, object, str]]:
        faults: list[tuple[str | int, object, str]] = []
        shown = source.model_dump(exclude_none=True)
        other = first_with_metric.setdefault(source, index)
        if other != index:
            faults.append(
                (f"{index}.sparkplug", shown, f"the same metric as characteristic[{other}]")
            )
        edge = self.bridge.sparkplug_edge
        if edge.enabled and (source.group, source.edge) == (edge.group, edge.edge):
            faults.append(
                (
                    f"{index}.sparkplug",
                    shown,
                    "is the bridge's own edge node (bridge.sparkplug_edge): it would read its"
                    " own results",
                )
            )
        return faults


class _TypedEnvSource(EnvSettingsSource):
    """The ``OPENSPC_...`` variables, numbers and true/false read from their text."""

    def __call__(self) -> dict[str, Any]:
        return _env_scalars(super().__call__())


# --- loading --------------------------------------------------------------------------------

_SECTIONS: Final[dict[str, type[BaseModel]]] = {
    "": Settings,
    "broker": BrokerSettings,
    "database": DatabaseSettings,
    "bridge": BridgeSettings,
    "sparkplug_edge": SparkplugEdgeSettings,
    "gateway": GatewaySettings,
    "cluster": ClusterSettings,
    "bridge.sparkplug": SparkplugHostSettings,
    "characteristic": CharacteristicSettings,
    "sparkplug": SparkplugSource,
}

_WHY: Final[dict[str, str]] = {
    "missing": "required",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string (in quotes)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list [...]",
    "dict_type": "must be a table {...}",
    "model_type": "must be a table {...}",
    "model_attributes_type": "must be a table {...}",
    "path_type": "must be a file path (a string)",
    "is_instance_of": "must be a file path (a string)",  # a strict Path given no text
}


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the TOML file at ``path`` (default ``config/openspc.toml``, relative to the
    working directory), apply ``OPENSPC_...`` environment overrides, validate, and resolve
    paths relative to the file's directory. Raises :class:`ConfigInvalid`."""
    shown = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    source = str(shown)
    base_dir = shown.absolute().parent
    data = _read_toml(shown)
    env, env_names = _read_env(shown)
    merged = _overlay(data, env)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigInvalid(shown, _faults(exc, source, env_names)) from None
    database = settings.database.model_copy(
        update={"url": _database_url(settings.database.url, base_dir)}
    )
    settings = settings.model_copy(update={"database": database})
    _share_fields_sets(settings.characteristic)
    users_file = settings.bridge.users_file
    if users_file is not None and not users_file.is_absolute():
        bridge = settings.bridge.model_copy(update={"users_file": base_dir / users_file})
        settings = settings.model_copy(update={"bridge": bridge})
    return _read_password_file(settings, shown, base_dir, source, env_names)


def _share_fields_sets(models: Sequence[BaseModel]) -> None:
    """One ``model_fields_set`` for all the models that set the same keys, instead of a set
    each: with 10,000 characteristics written alike that is one set, not 10,000 (about 7 MB;
    docs/performance.md, "Memory at start-up"). The models are frozen, so pydantic never adds
    to the set; ``model_copy`` copies it before it would."""
    shared: dict[frozenset[str], set[str]] = {}
    for model in models:
        names = model.__pydantic_fields_set__
        one = shared.setdefault(frozenset(names), names)
        if one is not names:
            object.__setattr__(model, "__pydantic_fields_set__", one)


def _read_toml(path: Path) -> dict[str, Any]:
    def fail(why: str) -> ConfigInvalid:
        return ConfigInvalid(path, [ConfigFault(str(path), "", MISSING, why)])

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise fail("no such file (give --config FILE, or copy config/openspc.toml)") from None
    except IsADirectoryError:
        raise fail("is a directory, not a TOML file") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # Windows editors add a BOM
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 (bad byte at offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        detail = message
        if message.endswith(")") and "(at line " in message:
            head, _, where = message.rpartition(" (at ")
            detail = f"{where[:-1]}: {head[0].lower()}{head[1:]}"
        raise fail(f"invalid TOML: {detail}") from None


def _read_env(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``OPENSPC_...`` overrides as nested data, and which dotted key each one set."""
    try:
        env = EnvSettingsSource(Settings)()
    except SettingsError as exc:
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        name = f"{ENV_PREFIX}{field.upper()}"
        cause = exc.__cause__
        why = "not valid JSON"
        if isinstance(cause, json.JSONDecodeError):
            why += f": {cause.msg} at column {cause.colno}"
        raise ConfigInvalid(path, [ConfigFault(f"environment {name}", "", MISSING, why)]) from None
    names: dict[str, str] = {}

    def walk(node: object, parts: tuple[str, ...]) -> None:
        if isinstance(node, dict) and parts != ("characteristic",):
            for key, value in node.items():
                walk(value, (*parts, str(key)))
        else:
            names[".".join(parts)] = ENV_PREFIX + "__".join(parts).upper()

    walk(env, ())
    return _env_scalars(env), names


def _env_scalars(env: dict[str, Any]) -> dict[str, Any]:
    """An environment variable is text, and every table is strictly typed: where a field
    takes no text (a number, true/false), the variable's text is read as JSON
    (``OPENSPC_BROKER__PORT=1884``), so only the file's ``port = "1884"`` is a fault. Text
    that is not such a value is left as it is: a fault naming the variable."""
    return _typed(Settings, env)


def _typed(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            continue  # an unknown key: refused by validation, naming the variable
        kinds = _kinds(info.annotation)
        nested = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if isinstance(value, dict) and nested:
            out[key] = _typed(nested[0], value)
        elif isinstance(value, str) and not kinds & {str, Path}:
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            # only the kind the field takes (a whole number also where a fraction may be):
            # "1883.5" for a port stays text and is refused as the text it was
            if type(parsed) in kinds or (type(parsed) is int and float in kinds):
                out[key] = parsed
    return out


def _kinds(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (``Annotated`` and unions unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in typing.get_args(annotation)))
    return {origin or annotation}


def _overlay(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in top.items():
        below = result.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            if key in ("broker", "gateway"):
                # A password from one place replaces a password_file from the other.
                below = dict(below)
                if "password" in value:
                    below.pop("password_file", None)
                if "password_file" in value:
                    below.pop("password", None)
            result[key] = _overlay(below, value)
        else:
            result[key] = value
    return result


def _dotted(loc: Iterable[str | int]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else part
    return key


def _source_of(key: str, file_source: str, env_names: Mapping[str, str]) -> str:
    plain = key.split("[", 1)[0] if key.startswith("characteristic") else key
    for dotted, name in env_names.items():
        if plain == dotted or plain.startswith(dotted + "."):
            return f"environment {name}"
    return file_source


def _unknown_key_why(loc: tuple[str | int, ...]) -> str:
    names = [part for part in loc[:-1] if isinstance(part, str)]
    model = _SECTIONS.get(".".join(names[-2:])) or _SECTIONS.get(names[-1] if names else "")
    if model is None:
        return "unknown key"
    known = {name.lower(): name for name in model.model_fields}
    close = difflib.get_close_matches(str(loc[-1]).lower(), list(known), n=1)
    return f"unknown key (did you mean {known[close[0]]}?)" if close else "unknown key"


def _faults(exc: ValidationError, source: str, env_names: Mapping[str, str]) -> list[ConfigFault]:
    faults: list[ConfigFault] = []
    for error in exc.errors():
        loc: tuple[str | int, ...] = tuple(error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _KeyFaults):
            for key, found, why in cause.faults:
                parts = tuple(
                    int(p) if isinstance(p, str) and p.isdigit() else p for p in str(key).split(".")
                )
                dotted = _dotted((*loc, *parts))
                faults.append(
                    ConfigFault(_source_of(dotted, source, env_names), dotted, found, why)
                )
            continue
        dotted = _dotted(loc)
        kind = error["type"]
        value: object = MISSING if kind == "missing" else error.get("input", MISSING)
        if kind == "extra_forbidden":
            why = _unknown_key_why(loc)
        elif loc == ("characteristic",) and kind == "list_type":
            why = (
                "must be a JSON list [{...}, ...]"
                if "characteristic" in env_names
                else "must be a list: write each one as [[characteristic]] (double brackets)"
            )
        elif kind in _WHY:
            why = _WHY[kind]
        elif isinstance(cause, Exception):
            why = str(cause)
        else:
            why = error["msg"]
        faults.append(ConfigFault(_source_of(dotted, source, env_names), dotted, value, why))
    return faults


def _read_password_file(
    settings: Settings, path: Path, base_dir: Path, source: str, env_names: Mapping[str, str]
) -> Settings:
    gateway_file = settings.gateway.password_file
    if gateway_file is not None:
        secret = _secret(gateway_file, base_dir, "gateway.password_file", path, source, env_names)
        gateway = settings.gateway.model_copy(update={"password": secret})
        settings = settings.model_copy(update={"gateway": gateway})
    password_file = settings.broker.password_file
    if password_file is None:
        return settings
    secret = _secret(password_file, base_dir, "broker.password_file", path, source, env_names)
    broker = settings.broker.model_copy(update={"password": secret})
    return settings.model_copy(update={"broker": broker})


def _secret(
    password_file: Path,
    base_dir: Path,
    key: str,
    path: Path,
    source: str,
    env_names: Mapping[str, str],
) -> str:
    """The password in ``password_file`` (relative to the config's directory), stripped."""
    file = password_file if password_file.is_absolute() else base_dir / password_file
    try:
        secret = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        why = f"cannot read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        why = "cannot read: not UTF-8 text"
    else:
        if secret:
            return secret
        why = "the file is empty"
    fault = ConfigFault(_source_of(key, source, env_names), key, str(password_file), why)
    raise ConfigInvalid(path, [fault])
