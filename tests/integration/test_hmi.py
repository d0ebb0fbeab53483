"""The HMI in a real headless Chromium, loaded from Mosquitto's websocket port (http_dir).

Each test has its own broker (the project's config and ACL, rendered for the test's prefix)
and opens the page with ``?prefix=`` so tests never see each other's topics. One browser is
shared by the session.
"""

from __future__ import annotations

from typing import Any

import pytest

# The fixtures (browser, plant, feed) come from hmi_support as a plugin; registered for
# assertion rewriting before it is imported here for its helpers.
pytest.register_assert_rewrite("tests.integration.hmi_support")
pytest_plugins = ["tests.integration.hmi_support"]

from tests.integration.hmi_support import (  # noqa: E402 (after the rewrite registration)
    Feed,
    HmiPlant,
    all_by_testid,
    attr_is,
    by_testid,
    console_errors,
    limits,
    meta,
    samples,
    screenshot,
    text_is,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


def test_page_loads_from_mosquitto_and_draws_history(
    browser: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    values = [10.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(30)]
    values[20] = 10.09
    history = samples(1, values, first_id=101, failing={20: [1]})
    feed.publish(
        f"{p}/bridge/status", {"online": True, "timestamp": history[-1]["timestamp"]}, retain=True
    )
    feed.publish(
        f"{p}/char/1/meta", meta(1, "Shaft OD", usl=10.1, lsl=9.9, target=10.0), retain=True
    )
    feed.publish(f"{p}/char/2/meta", meta(2, "Bore ID", n=5), retain=True)
    feed.publish(f"{p}/char/1/limits", limits(1, 10.0, 0.02), retain=True)
    feed.publish(
        f"{p}/char/1/history",
        {"type": "history", "payload": {"characteristic_id": 1, "samples": history}},
        retain=True,
    )
    feed.publish(f"{p}/char/1/sample", {"type": "sample", "payload": history[-1]}, retain=True)

    browser.get(plant.page_url())
    wait_until(browser, attr_is("conn-status", "data-state", "connected"))
    wait_until(browser, attr_is("bridge-status", "data-state", "online"))
    wait_until(browser, attr_is("x-chart", "data-points", "30"))
    names = [e.text.split("\n")[0] for e in all_by_testid(browser, "char-item")]
    assert names == ["Shaft OD", "Bore ID"]
    assert by_testid(browser, "char-title").text == "Shaft OD"
    chart = by_testid(browser, "x-chart")
    assert chart.get_attribute("data-marks") == "121:1"
    assert chart.get_attribute("data-last-sample-id") == "130"
    wait_until(browser, text_is("last-value", f"{values[-1]:.3f}"))
    assert by_testid(browser, "r-chart").get_attribute("data-points") == "29"
    assert by_testid(browser, "kpi-ucl").text == "10.060"
    screenshot(browser, "hmi-history")
    assert console_errors(browser) == []
