"""Where the files shipped with the package are: the one place that knows (docs/packaging.md).

The broker's configuration template, the HMI page and the broker plugin's source live in the
top-level ``mosquitto/`` folder of the repository, which is also a data-only package of the
distribution (pyproject.toml ``package-data``). They are found through
:mod:`importlib.resources`, never relative to a checkout, so the same code works in a
checkout, an editable install and a wheel installed anywhere. Nothing is ever written there:
state goes to the directory the user names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["PackageDataMissing", "broker_template", "hmi_dir", "plugin_dir"]

_PACKAGE = "mosquitto"


class PackageDataMissing(Exception):
    """A file that ships with the package is not there (an install from an unprepared checkout)."""

    def __init__(self, path: Path, hint: str) -> None:
        self.path = path
        self.hint = hint
        super().__init__(f"{path} is missing: {hint}")


def _root() -> Path:
    root = resources.files(_PACKAGE)
    if not isinstance(root, Path):
        # a zip import: Mosquitto needs real files (it is given their paths)
        raise PackageDataMissing(Path(str(root)), "install the package as files, not zipped")
    return root


def broker_template() -> Path:
    """``mosquitto.conf``: the broker's configuration, rendered for each broker we start."""
    return _root() / "mosquitto.conf"


def hmi_dir(*, built: bool = False) -> Path:
    """The directory Mosquitto serves as ``http_dir``: index.html, style.css, app.js, vendor/.

    With ``built``, raise :class:`PackageDataMissing` unless the page's built scripts are there
    (``app.js`` bundled from hmi/src/ and ``vendor/``, both made by scripts/build-hmi).
    """
    path = _root() / "hmi"
    if built:
        for needed in (path / "app.js", path / "vendor" / "mqtt.min.js"):
            if not needed.is_file():
                raise PackageDataMissing(
                    needed, "run scripts/build-hmi (scripts/setup does) before installing"
                )
    return path


def plugin_dir() -> Path:
    """The source of the broker plugin (``mosquitto/plugin/``), compiled on demand."""
    return _root() / "plugin"
