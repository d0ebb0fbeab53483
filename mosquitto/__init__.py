"""Package data, not code: the plant's Mosquitto configuration and what it serves.

``mosquitto.conf`` (the broker's configuration, rendered by ``openspc demo`` and the tests),
``hmi/`` (the page Mosquitto's ``http_dir`` serves: index.html, style.css, the bundled
app.js and vendor/, built by scripts/build-hmi) and ``plugin/`` (the broker plugin's source,
compiled on demand). This file makes the folder an importable package so that
``importlib.resources`` finds it in a checkout, an editable install and a wheel alike;
the bridge locates it through :mod:`bridge._package_data` only. See docs/packaging.md.
"""
