"""The HMI in a real headless Chromium, loaded from Mosquitto's websocket port (http_dir).

Each test has its own broker (the project's config and ACL, rendered for the test's prefix)
and opens the page with ``?prefix=`` so tests never see each other's topics. One browser is
shared by the session.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# The fixtures (browser, plant, feed) come from hmi_support as a plugin; registered for
# assertion rewriting before it is imported here for its helpers.
pytest.register_assert_rewrite("tests.integration.hmi_support")
pytest_plugins = ["tests.integration.hmi_support"]

from selenium.webdriver.common.by import By  # noqa: E402 (after the rewrite registration)
from selenium.webdriver.support.ui import Select  # noqa: E402 (after the rewrite registration)

from tests.integration.hmi_support import (  # noqa: E402 (after the rewrite registration)
    PASSWORDS,
    BridgeThread,
    Feed,
    HmiPlant,
    all_by_testid,
    attr_is,
    by_testid,
    console_errors,
    cusum_chart,
    envelope,
    ewma_chart,
    family_limits,
    family_meta,
    iso,
    limits,
    meta,
    open_window,
    p_chart,
    record_figure,
    samples,
    screenshot,
    set_viewport,
    text_is,
    violation,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


def test_page_loads_from_mosquitto_and_draws_history(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    browser = page
    p = plant.prefix
    values = [10.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(30)]
    values[20] = 10.09
    history = samples(1, values, first_id=101, failing={20: [1]})
    feed.publish(
        f"{p}/bridge/status", {"online": True, "timestamp": history[-1]["timestamp"]}, retain=True
    )
    # char 2 first: the page still opens on the lowest id, whatever order the broker keeps
    feed.publish(f"{p}/char/2/meta", meta(2, "Bore ID", n=5, online=False), retain=True)
    feed.publish(
        f"{p}/char/1/meta", meta(1, "Shaft OD", usl=10.1, lsl=9.9, target=10.0), retain=True
    )
    feed.publish(f"{p}/char/1/limits", limits(1, 10.0, 0.02), retain=True)
    feed.publish(
        f"{p}/char/1/history",
        {"type": "history", "payload": {"characteristic_id": 1, "samples": history}},
        retain=True,
    )
    feed.publish(f"{p}/char/1/sample", {"type": "sample", "payload": history[-1]}, retain=True)
    # a neglected characteristic: the bridge keeps only its newest open alarms in the retained
    # list, and counts them all in open_count
    newest = [violation(1, 9000 + i, 128 + i, rule_id=2) for i in range(3)]
    feed.publish(
        f"{p}/char/1/alarms",
        envelope("alarms", {"characteristic_id": 1, "violations": newest, "open_count": 1200}),
        retain=True,
    )

    browser.get(plant.page_url())
    wait_until(browser, attr_is("conn-status", "data-state", "connected"))
    wait_until(browser, attr_is("bridge-status", "data-state", "online"))
    wait_until(browser, attr_is("x-chart", "data-points", "30"))
    names = [e.text.split("\n")[0] for e in all_by_testid(browser, "char-item")]
    assert names == ["Shaft OD", "Bore ID"]
    bore_item = all_by_testid(browser, "char-item")[1]
    assert "SOURCE OFFLINE" in bore_item.text  # its Sparkplug B edge node is dead
    assert by_testid(browser, "char-title").text == "Shaft OD"
    chart = by_testid(browser, "x-chart")
    assert chart.get_attribute("data-marks") == "121:1"
    assert chart.get_attribute("data-last-sample-id") == "130"
    wait_until(browser, text_is("last-value", f"{values[-1]:.3f}"))
    assert by_testid(browser, "r-chart").get_attribute("data-points") == "29"
    assert by_testid(browser, "kpi-ucl").text == "10.060"
    wait_until(browser, text_is("alarm-count", "1200"))
    assert len(all_by_testid(browser, "alarm-row")) == 3
    assert by_testid(browser, "alarm-more").text == "+ 1197 older open alarm(s)"
    assert by_testid(browser, "char-alarm-count").text == "1200"
    screenshot(browser, "hmi-history")
    # Everything fits a 1280x800 panel: no scrolling, the big value and the alarms on screen.
    fits = browser.execute_script(
        """
        const inside = (id) => { const r = document.getElementById(id).getBoundingClientRect();
          return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth
            && r.bottom <= innerHeight; };
        return [innerWidth, innerHeight, document.documentElement.scrollWidth,
                document.documentElement.scrollHeight,
                ["last-value", "process-state", "x-chart", "r-chart", "alarm-list", "bridge-status",
                 "conn-status", "login-submit"].filter((id) => !inside(id))];
        """
    )
    assert fits == [1280, 800, 1280, 800, []]

    # Another characteristic: its own retained history is drawn when it is picked.
    bore = samples(2, [25.0 + 0.002 * (i % 4) for i in range(12)], first_id=501)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    for i, s in enumerate(bore):
        s["values"] = [s["value"]] * 5
        s["range"] = 0.004
        s["timestamp"] = iso(two_hours_ago + timedelta(seconds=i))
    feed.publish(
        f"{p}/char/2/history",
        {"type": "history", "payload": {"characteristic_id": 2, "samples": bore}},
        retain=True,
    )
    feed.publish(f"{p}/char/2/limits", limits(2, 25.003, 0.004, mr_bar=0.0047), retain=True)
    all_by_testid(browser, "char-item")[1].click()
    wait_until(browser, text_is("char-title", "Bore ID"))
    wait_until(browser, attr_is("x-chart", "data-points", "12"))
    assert by_testid(browser, "r-chart").get_attribute("data-points") == "12"
    assert by_testid(browser, "x-chart").get_attribute("data-marks") == ""
    assert browser.find_element(By.ID, "r-title").text == "Range (R) chart"
    assert "char=2" in browser.current_url
    assert by_testid(browser, "last-time").text.endswith("(1 h ago) · sample #512")

    # A link (or a kiosk's start page) names the characteristic to show; and without one, the
    # page opens on the one last picked in this browser.
    browser.execute_script("localStorage.clear()")
    browser.get(plant.page_url(char="2"))
    wait_until(browser, text_is("char-title", "Bore ID"))
    wait_until(browser, attr_is("x-chart", "data-points", "12"))
    all_by_testid(browser, "char-item")[0].click()
    wait_until(browser, text_is("char-title", "Shaft OD"))
    all_by_testid(browser, "char-item")[1].click()
    wait_until(browser, text_is("char-title", "Bore ID"))
    browser.get(plant.page_url())  # no ?char=: the last pick, not the lowest id
    wait_until(browser, attr_is("x-chart", "data-points", "12"))
    assert by_testid(browser, "char-title").text == "Bore ID"
    assert console_errors(browser) == []


SHAFT = {
    "id": 1,
    "name": "Shaft OD",
    "unit": "mm",
    "center_line": 10.0,
    "ucl": 10.3,
    "lcl": 9.7,
    "rules": [1],
}
"""Fixed limits (sigma 0.1, so two decimals on screen), rule 1 only: 11.0 is one alarm."""


def alarm_cards(driver: Any) -> list[dict[str, Any]]:
    """The alarm cards as drawn: sample, violation ids and the rule lines of each

    (read in one script, so a card removed meanwhile cannot go stale half-way)."""
    cards: list[dict[str, Any]] = driver.execute_script(
        """
        return [...document.querySelectorAll('[data-testid="alarm-row"]')].map((card) => ({
          sample: card.dataset.sampleId,
          ids: card.dataset.violationIds.split(" ").map(Number),
          rules: [...card.querySelectorAll('[data-testid="alarm-rule"]')]
            .map((r) => r.textContent),
        }));
        """
    )
    return cards


def choose_cause(card: Any, cause: str) -> None:
    Select(card.find_element(By.CSS_SELECTOR, '[data-testid="ack-reason"]')).select_by_visible_text(
        cause
    )


def log_in(driver: Any, user: str, password: str) -> None:
    by_testid(driver, "login-user").send_keys(user)
    by_testid(driver, "login-password").send_keys(password)
    by_testid(driver, "login-submit").click()


def test_a_reading_through_the_real_bridge_is_on_screen_within_a_second(
    page: Any, plant: HmiPlant, feed: Feed, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    run_bridge_on([SHAFT])
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    wait_until(page, lambda d: [e.text.split("\n")[0] for e in all_by_testid(d, "char-item")])
    for value in ("10.01", "9.98", "10.02"):
        feed.publish(f"{plant.prefix}/char/1/reading", value)
    wait_until(page, attr_is("x-chart", "data-points", "3"))

    started = time.monotonic()
    feed.publish(f"{plant.prefix}/char/1/reading", "10.25")
    wait_until(page, text_is("last-value", "10.25"), timeout=5)
    elapsed = time.monotonic() - started
    wait_until(page, attr_is("x-chart", "data-points", "4"), timeout=1)
    record_figure("reading_to_screen_ms", round(elapsed * 1000, 1))
    assert elapsed < 1.0
    assert by_testid(page, "process-state").get_attribute("data-state") == "in_control"
    assert by_testid(page, "kpi-ucl").text == "10.30"
    assert console_errors(page) == []


def answer_as_bridge(feed: Feed, command: Any, reply: dict[str, Any]) -> None:
    """Reply to ``command`` on its response topic with its correlation data, as the bridge."""
    answer = Properties(PacketTypes.PUBLISH)
    answer.CorrelationData = command.properties.CorrelationData
    feed.client.publish(
        command.properties.ResponseTopic, json.dumps(reply), qos=1, properties=answer
    ).wait_for_publish(5)


def no_more_commands(feed: Feed, topic: str) -> None:
    """No further command on ``topic`` (a short wait: an absence cannot be awaited)."""
    with pytest.raises(AssertionError, match="no matching MQTT message"):
        feed.expect(lambda m: m.topic == topic, timeout=1.0)


def test_one_card_per_sample_acknowledged_in_one_command_and_every_open_page_drops_it(
    page: Any, plant: HmiPlant, feed: Feed, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    """One bad sample failing several rules on two charts is ONE card; one action, with a
    cause the user must choose, sends ONE bulk command naming every alarm of it, which the
    real bridge carries out: an ack_update per alarm, with the cause, action and comment."""
    p = plant.prefix
    run_bridge_on([{**SHAFT, "rules": [1, 5]}])
    feed.subscribe(f"{p}/cmd/ack/+")
    feed.subscribe(f"{p}/char/1/ack")
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    operator = page.current_window_handle

    feed.publish(f"{p}/char/1/reading", "10.0")
    feed.publish(f"{p}/char/1/reading", "10.25")  # zone A
    feed.publish(f"{p}/char/1/reading", "11.0")  # beyond UCL, 2 of 3 beyond 2 sigma, MR beyond
    expected_rules = [
        "X · Rule 1: Beyond 3 sigma",
        "X · Rule 5: Two of three beyond 2 sigma",
        "MR · Rule 1: Beyond 3 sigma",
    ]
    cards = wait_until(page, lambda d: (c := alarm_cards(d)) and len(c[0]["rules"]) == 3 and c)
    assert len(cards) == 1
    assert cards[0]["rules"] == expected_rules
    card_ids = cards[0]["ids"]
    assert len(card_ids) == 3
    assert by_testid(page, "alarm-count").text == "3"  # the true count of alarms
    assert by_testid(page, "ack-button").get_attribute("disabled")  # anonymous
    assert "new" in by_testid(page, "alarm-row").get_attribute("class")
    # the sample that failed comes on its own topic: its marks may be drawn a frame later
    wait_until(page, lambda d: by_testid(d, "x-chart").get_attribute("data-marks").endswith(":1,5"))
    wait_until(page, lambda d: by_testid(d, "r-chart").get_attribute("data-marks").endswith(":1"))

    # A page opened later learns of the open alarms from the retained `alarms` topic alone.
    watcher = open_window(page, plant.page_url())
    later = wait_until(page, lambda d: (c := alarm_cards(d)) and len(c[0]["rules"]) == 3 and c)
    assert later == cards
    # already open when this page came: no attention pulse
    assert "new" not in by_testid(page, "alarm-row").get_attribute("class")
    assert console_errors(page) == []

    page.switch_to.window(operator)
    log_in(page, "alice", PASSWORDS["alice"])
    wait_until(page, text_is("current-user", "● alice"))
    wait_until(page, attr_is("conn-status", "data-state", "connected"))
    card = by_testid(page, "alarm-row")
    button = card.find_element(By.CSS_SELECTOR, '[data-testid="ack-button"]')
    # no cause is preselected: the button waits for one; action and comment open with it
    reason = card.find_element(By.CSS_SELECTOR, '[data-testid="ack-reason"]')
    action = card.find_element(By.CSS_SELECTOR, '[data-testid="ack-action"]')
    comment = card.find_element(By.CSS_SELECTOR, '[data-testid="ack-comment"]')
    assert reason.get_attribute("value") == ""
    assert not action.is_displayed()
    assert button.get_attribute("disabled")
    assert button.get_attribute("title") == "choose a cause first"
    choose_cause(card, "Measurement Error")
    wait_until(page, lambda d: button.is_enabled() and action.is_displayed())
    assert action.get_attribute("value") == ""  # "No action": none preselected either
    Select(action).select_by_visible_text("Recalibrated Gauge")
    comment.send_keys("gauge 7 drifted; " + "x" * 600)  # the field keeps at most 500
    assert button.text == "Acknowledge all 3"
    screenshot(page, "hmi-alarm-before-ack")
    button.click()

    command = feed.expect(lambda m: m.topic == f"{p}/cmd/ack/alice")
    sent = json.loads(command.payload)
    assert sent == {
        "violation_ids": card_ids,
        "cause": "Measurement Error",
        "action": "Recalibrated Gauge",
        "comment": ("gauge 7 drifted; " + "x" * 600)[:500],
        "exclude_sample": False,
    }
    # the bridge's broadcast: one ack_update per alarm (docs/topics.md, "Alarm workflow")
    updates = [
        json.loads(feed.expect(lambda m: m.topic == f"{p}/char/1/ack").payload)["payload"]
        for _ in card_ids
    ]
    assert sorted(u["violation_id"] for u in updates) == sorted(card_ids)
    assert {(u["user"], u["cause"], u["action"], u["comment"]) for u in updates} == {
        ("alice", "Measurement Error", "Recalibrated Gauge", sent["comment"])
    }
    wait_until(page, lambda d: alarm_cards(d) == [])
    assert by_testid(page, "ack-error").is_displayed() is False
    assert by_testid(page, "alarm-count").text == "0"
    no_more_commands(feed, f"{p}/cmd/ack/alice")  # ONE command for the card's three alarms
    page.switch_to.window(watcher)
    wait_until(page, lambda d: alarm_cards(d) == [])
    wait_until(page, text_is("alarm-count", "0"))
    screenshot(page, "hmi-after-ack-other-page")
    assert console_errors(page) == []


def test_every_open_alarm_of_a_characteristic_in_one_command(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    """The bulk bar (the characteristic filter picks one): `characteristic_id` + `all_open`,
    all or nothing; a refusal leaves every card; another characteristic's stay."""
    p = plant.prefix
    feed.publish(f"{p}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    feed.publish(f"{p}/char/2/meta", meta(2, "Bore ID"), retain=True)
    shaft = [violation(1, 11 + k, 101 + k, rule_id=2) for k in range(4)]
    for char_id, vs in ((1, shaft), (2, [violation(2, 21, 201)])):
        feed.publish(
            f"{p}/char/{char_id}/alarms",
            envelope("alarms", {"characteristic_id": char_id, "violations": vs, "open_count": 4}),
            retain=True,
        )
    feed.subscribe(f"{p}/cmd/ack/+")
    page.get(plant.page_url())
    log_in(page, "bob", PASSWORDS["bob"])
    wait_until(page, text_is("current-user", "● bob"))
    wait_until(page, lambda d: len(alarm_cards(d)) == 5)
    assert not by_testid(page, "bulk-ack").is_displayed()  # all characteristics: no bulk bar
    Select(by_testid(page, "alarm-filter-char")).select_by_visible_text("Shaft OD")
    bar = wait_until(
        page, lambda d: by_testid(d, "bulk-ack").is_displayed() and by_testid(d, "bulk-ack")
    )
    assert by_testid(page, "bulk-title").text == "All 4 open alarm(s) of Shaft OD"
    button = by_testid(page, "bulk-button")
    assert button.text == "Acknowledge all 4"
    assert button.get_attribute("disabled")
    # the causes offered are the meta's (hmi_support.meta: three), none chosen
    options = [o.text for o in Select(by_testid(page, "bulk-reason")).options]
    assert options == ["Choose a cause…", "Tool Change", "Measurement Error", "Other"]
    Select(by_testid(page, "bulk-reason")).select_by_visible_text("Tool Change")
    wait_until(page, lambda d: button.is_enabled())
    screenshot(page, "hmi-bulk-ack")
    button.click()
    command = feed.expect(lambda m: m.topic == f"{p}/cmd/ack/bob")
    assert json.loads(command.payload) == {
        "characteristic_id": 1,
        "all_open": True,
        "cause": "Tool Change",
        "exclude_sample": False,
    }
    # all or nothing: a refusal changes nothing on screen
    answer_as_bridge(feed, command, {"ok": False, "error": "violation 12 is already acknowledged"})
    error = wait_until(
        page, lambda d: by_testid(d, "ack-error").is_displayed() and by_testid(d, "ack-error")
    )
    assert error.text == (
        "Acknowledge of all open alarms of Shaft OD failed: violation 12 is already acknowledged"
    )
    assert len(alarm_cards(page)) == 4
    wait_until(page, lambda d: button.is_enabled())
    button.click()
    command = feed.expect(lambda m: m.topic == f"{p}/cmd/ack/bob")
    answer_as_bridge(feed, command, {"ok": True})
    wait_until(page, lambda d: alarm_cards(d) == [])
    assert not bar.is_displayed()
    Select(by_testid(page, "alarm-filter-char")).select_by_visible_text("All characteristics")
    wait_until(page, lambda d: [c["ids"] for c in alarm_cards(d)] == [[21]])
    # the next characteristic's bar starts with no cause chosen (none carried over)
    Select(by_testid(page, "alarm-filter-char")).select_by_visible_text("Bore ID")
    wait_until(page, text_is("bulk-title", "All 4 open alarm(s) of Bore ID"))
    assert by_testid(page, "bulk-reason").get_attribute("value") == ""
    assert by_testid(page, "bulk-button").get_attribute("disabled")
    assert by_testid(page, "alarm-count").text == "4"  # Bore ID's open_count
    assert console_errors(page) == []


def test_spec_and_overdue_alarms_are_shown_distinctly(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    feed.publish(f"{p}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    rule = violation(1, 31, 301, rule_id=1)
    spec = {
        **violation(1, 32, 301, rule_id=1),
        "rule_id": None,
        "kind": "spec",
        "rule_name": "Beyond specification",
        "chart": None,
    }
    overdue = {
        **violation(1, 33, 0, rule_id=2),
        "rule_id": None,
        "kind": "overdue",
        "rule_name": "Sample overdue",
        "chart": None,
        "sample_id": None,
    }
    feed.publish(
        f"{p}/char/1/alarms",
        envelope(
            "alarms",
            {
                "characteristic_id": 1,
                "violations": [rule | {"kind": "rule"}, spec, overdue],
                "open_count": 3,
            },
        ),
        retain=True,
    )
    page.get(plant.page_url())
    wait_until(page, lambda d: len(alarm_cards(d)) == 2)
    kinds = page.execute_script(
        """return [...document.querySelectorAll('[data-testid="alarm-row"]')].map((c) => [
             c.dataset.violationIds, c.dataset.kinds,
             c.querySelector('[data-testid="alarm-kinds"]').textContent,
             getComputedStyle(c.querySelector('[data-testid="alarm-kinds"]')).backgroundColor]);"""
    )
    by_ids = {k[0]: k[1:] for k in kinds}
    # the sample's rule and spec alarms on one card, the overdue one on its own
    assert by_ids["31 32"][:2] == ["rule spec", "OUT OF SPEC"]
    assert by_ids["33"][:2] == ["overdue", "OVERDUE"]
    assert by_ids["31 32"][2] != by_ids["33"][2]  # two colours
    lines = [c["rules"] for c in alarm_cards(page)]
    assert ["X · Rule 1: Beyond 3 sigma", "Beyond specification"] in lines
    assert ["Sample overdue"] in lines
    screenshot(page, "hmi-alarm-kinds")
    assert console_errors(page) == []


def test_alarms_are_filtered_by_characteristic_and_severity(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    feed.publish(f"{p}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    feed.publish(f"{p}/char/2/meta", meta(2, "Bore ID"), retain=True)
    a = violation(1, 11, 101, rule_id=1)  # CRITICAL
    b = violation(1, 12, 102, rule_id=2)  # WARNING
    c = violation(2, 21, 201, rule_id=2)  # WARNING
    for char_id, vs in ((1, [a, b]), (2, [c])):
        feed.publish(
            f"{p}/char/{char_id}/alarms",
            envelope(
                "alarms",
                {"characteristic_id": char_id, "violations": vs, "open_count": len(vs)},
            ),
            retain=True,
        )
    page.get(plant.page_url())
    wait_until(page, lambda d: len(alarm_cards(d)) == 3)
    samples_shown = lambda d: sorted(c["sample"] for c in alarm_cards(d))  # noqa: E731
    Select(by_testid(page, "alarm-filter-char")).select_by_visible_text("Shaft OD")
    wait_until(page, lambda d: samples_shown(d) == ["101", "102"])
    Select(by_testid(page, "alarm-filter-severity")).select_by_visible_text("Warning")
    wait_until(page, lambda d: samples_shown(d) == ["102"])
    Select(by_testid(page, "alarm-filter-char")).select_by_visible_text("All characteristics")
    wait_until(page, lambda d: samples_shown(d) == ["102", "201"])
    assert by_testid(page, "alarm-count").text == "3"  # the count stays the true one
    Select(by_testid(page, "alarm-filter-severity")).select_by_visible_text("Critical")
    wait_until(page, lambda d: samples_shown(d) == ["101"])
    assert console_errors(page) == []


def test_the_bridges_refusal_of_an_acknowledgement_is_shown(
    page: Any, plant: HmiPlant, feed: Feed, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    run_bridge_on([SHAFT])
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    log_in(page, "bob", PASSWORDS["bob"])
    wait_until(page, text_is("current-user", "● bob"))
    # A violation the bridge never raised: the bridge must answer "unknown violation".
    ghost = {"type": "violation", "payload": violation(1, 987654, 1)}
    feed.publish(f"{plant.prefix}/char/1/violation", ghost)
    choose_cause(wait_until(page, lambda d: by_testid(d, "alarm-row")), "Tool Change")
    button = wait_until(
        page, lambda d: by_testid(d, "ack-button").is_enabled() and by_testid(d, "ack-button")
    )
    button.click()
    error = wait_until(
        page, lambda d: by_testid(d, "ack-error").is_displayed() and by_testid(d, "ack-error")
    )
    assert "987654" in error.text
    assert "failed" in error.text
    assert len(all_by_testid(page, "alarm-row")) == 1  # still open: nothing changed
    screenshot(page, "hmi-ack-refused")
    assert console_errors(page) == []


def test_a_command_asks_for_its_reply_in_the_users_own_reply_tree(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    """docs/topics.md: a response topic must lie in <prefix>/reply/<user>/..., which only that
    user may read; the page answers to a reply there (here the test plays the bridge)."""
    feed.publish(f"{plant.prefix}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    feed.subscribe(f"{plant.prefix}/cmd/ack/+")
    page.get(plant.page_url())
    log_in(page, "bob", PASSWORDS["bob"])
    wait_until(page, text_is("current-user", "● bob"))
    feed.publish(
        f"{plant.prefix}/char/1/violation", {"type": "violation", "payload": violation(1, 31, 5)}
    )
    choose_cause(wait_until(page, lambda d: by_testid(d, "alarm-row")), "Tool Change")
    button = wait_until(
        page, lambda d: by_testid(d, "ack-button").is_enabled() and by_testid(d, "ack-button")
    )
    button.click()
    command = feed.expect(lambda m: m.topic == f"{plant.prefix}/cmd/ack/bob")
    reply_topic = command.properties.ResponseTopic
    assert re.fullmatch(
        re.escape(f"{plant.prefix}/reply/bob/") + r"openspc-hmi-[a-z0-9]+", reply_topic
    )
    assert json.loads(command.payload) == {
        "violation_ids": [31],
        "cause": "Tool Change",
        "exclude_sample": False,
    }
    answer_as_bridge(feed, command, {"ok": False, "error": "the test says no"})
    error = wait_until(
        page, lambda d: by_testid(d, "ack-error").is_displayed() and by_testid(d, "ack-error")
    )
    assert error.text == "Acknowledge of alarm #31 failed: the test says no"
    assert console_errors(page) == []


def test_the_brokers_refusal_of_an_acknowledgement_is_shown(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    feed.publish(f"{plant.prefix}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    page.get(plant.page_url())
    log_in(page, "gauge1", PASSWORDS["gauge1"])  # a gauge's account: it may not acknowledge
    wait_until(page, text_is("current-user", "● gauge1"))
    ghost = {"type": "violation", "payload": violation(1, 4242, 7)}
    feed.publish(f"{plant.prefix}/char/1/violation", ghost)
    choose_cause(wait_until(page, lambda d: by_testid(d, "alarm-row")), "Tool Change")
    button = wait_until(
        page, lambda d: by_testid(d, "ack-button").is_enabled() and by_testid(d, "ack-button")
    )
    button.click()
    error = wait_until(
        page, lambda d: by_testid(d, "ack-error").is_displayed() and by_testid(d, "ack-error")
    )
    assert "#4242" in error.text
    assert "Not authorized" in error.text
    assert by_testid(page, "ack-button").is_enabled()  # may be tried again
    assert console_errors(page) == []


def test_the_bridge_status_goes_offline_when_the_bridge_stops(
    page: Any, plant: HmiPlant, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    bridge = run_bridge_on([SHAFT])
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    assert by_testid(page, "bridge-status").text == "BRIDGE: ONLINE"
    bridge.stop()
    wait_until(page, attr_is("bridge-status", "data-state", "offline"))
    assert by_testid(page, "bridge-status").text.startswith("BRIDGE: OFFLINE")
    banner = by_testid(page, "stale-banner")
    assert banner.is_displayed()
    assert banner.text.startswith("BRIDGE OFFLINE since ")
    assert by_testid(page, "conn-status").get_attribute("data-state") == "connected"
    screenshot(page, "hmi-bridge-offline")
    assert console_errors(page) == []


def test_a_refused_login_falls_back_to_the_read_only_view(page: Any, plant: HmiPlant) -> None:
    page.get(plant.page_url())
    wait_until(page, attr_is("conn-status", "data-state", "connected"))
    log_in(page, "alice", "wrong-password")
    wait_until(page, text_is("login-error", "Login refused for 'alice'"))
    wait_until(page, attr_is("conn-status", "data-state", "connected"))
    assert by_testid(page, "current-user").text == ""
    assert by_testid(page, "login-form").is_displayed()
    assert console_errors(page) == []


def test_the_page_reconnects_by_itself_after_a_broker_restart(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    feed.publish(
        f"{p}/bridge/status", {"online": True, "timestamp": "2026-11-28T06:00:00.000Z"}, retain=True
    )
    feed.publish(f"{p}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    feed.close()

    plant.broker.stop()
    wait_until(
        page,
        lambda d: (
            by_testid(d, "conn-status").get_attribute("data-state")
            in {"disconnected", "reconnecting"}
        ),
    )
    assert by_testid(page, "bridge-status").get_attribute("data-state") == "unknown"
    assert by_testid(page, "stale-banner").text.startswith("NO CONNECTION TO THE BROKER")
    assert by_testid(page, "conn-status").text.startswith("BROKER: ")
    screenshot(page, "hmi-broker-down")
    plant.broker.start()  # same ports and persistence: the retained status comes back
    wait_until(page, attr_is("conn-status", "data-state", "connected"), timeout=10)
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    assert not by_testid(page, "stale-banner").is_displayed()
    errors = console_errors(page)
    assert all("WebSocket connection to" in e for e in errors), errors


def test_the_chart_keeps_at_most_the_history_size_of_points(
    page: Any, plant: HmiPlant, feed: Feed, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    run_bridge_on([SHAFT])
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    wait_until(page, lambda d: all_by_testid(d, "char-item"))
    feed.subscribe(f"{plant.prefix}/char/1/sample")
    for i in range(130):
        feed.publish(f"{plant.prefix}/char/1/reading", f"{10 + (i % 7 - 3) / 100:.2f}")
    live = [feed.expect(lambda m: not m.retain, timeout=10) for _ in range(130)]
    last = json.loads(live[-1].payload)
    wait_until(page, attr_is("x-chart", "data-points", "100"), timeout=10)
    chart = by_testid(page, "x-chart")
    assert chart.get_attribute("data-last-sample-id") == str(last["payload"]["sample_id"])
    assert console_errors(page) == []


def test_a_burst_of_samples_is_drawn_without_falling_behind(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    feed.publish(f"{p}/char/1/meta", meta(1, "Shaft OD"), retain=True)
    feed.publish(f"{p}/char/1/limits", limits(1, 10.0, 0.02), retain=True)
    page.get(plant.page_url())
    wait_until(page, lambda d: all_by_testid(d, "char-item"))
    values = [10 + (i % 9 - 4) / 200 for i in range(3000)]
    burst = samples(1, values, failing={i: [1] for i in range(0, 3000, 37)})

    started = time.monotonic()
    for s in burst:
        info = feed.client.publish(f"{p}/char/1/sample", json.dumps(envelope("sample", s)), qos=1)
    info.wait_for_publish(10)
    wait_until(page, attr_is("x-chart", "data-last-sample-id", "3000"), timeout=10)
    elapsed = time.monotonic() - started
    record_figure("burst_3000_samples_to_screen_ms", round(elapsed * 1000, 1))
    chart = by_testid(page, "x-chart")
    assert chart.get_attribute("data-points") == "100"  # capped, newest last
    assert chart.get_attribute("data-marks") == "2924:1 2961:1 2998:1"
    labelled = [int(i) for i in chart.get_attribute("data-labelled-samples").split()]
    assert labelled, "the time axis names no sample"
    assert min(labelled) > 2900  # the axis follows the window of points, not the first 100
    assert elapsed < 5
    assert console_errors(page) == []


def legend_clear_of_button(driver: Any) -> bool:
    """The recalculation button is shown, inside the window, and no legend box overlaps it."""
    result: bool = driver.execute_script(
        """
        const b = document.getElementById("recalc").getBoundingClientRect();
        if (!b.width || b.left < 0 || b.right > innerWidth) return false;
        const legend = document.querySelector(".chart-box-x .legend");
        if (legend.offsetParent === null) return true;
        for (const r of legend.getClientRects()) {
          if (r.left < b.right && b.left < r.right && r.top < b.bottom && b.top < r.bottom) {
            return false;
          }
        }
        return true;
        """
    )
    return result


def test_an_engineer_recalculates_the_limits_and_an_operator_may_not(
    page: Any, plant: HmiPlant, feed: Feed, run_bridge_on: Callable[..., BridgeThread]
) -> None:
    p = plant.prefix
    run_bridge_on([{"id": 3, "name": "Fill weight", "unit": "g", "baseline": 5, "rules": [1]}])
    page.get(plant.page_url())
    wait_until(page, attr_is("bridge-status", "data-state", "online"))
    for value in ("500.0", "500.4", "499.6"):
        feed.publish(f"{p}/char/3/reading", value)
    wait_until(page, text_is("last-rules", "limits after 3 of 5 subgroups"))
    assert by_testid(page, "process-state").text == "BASELINE"
    for value in ("500.2", "499.8"):
        feed.publish(f"{p}/char/3/reading", value)
    wait_until(page, lambda d: by_testid(d, "kpi-ucl").text != "—")
    baseline_ucl = by_testid(page, "kpi-ucl").text
    for value in ("502.0", "498.0", "503.0", "497.0", "501.0"):
        feed.publish(f"{p}/char/3/reading", value)
    wait_until(page, attr_is("x-chart", "data-points", "10"))

    log_in(page, "alice", PASSWORDS["alice"])  # an operator: the ACL refuses the command
    wait_until(page, text_is("current-user", "● alice"))
    by_testid(page, "recalc").click()
    by_testid(page, "recalc").click()  # the second click confirms
    wait_until(page, attr_is("recalc-status", "data-state", "error"))
    status = by_testid(page, "recalc-status")
    # in plain words, whole (the broker's own words in its tooltip)
    assert status.text == "Only engineers may recalculate limits"
    assert "Not authorized" in status.get_attribute("title")
    assert page.execute_script(
        "const e = arguments[0]; return e.scrollWidth <= e.clientWidth", status
    )
    assert by_testid(page, "kpi-ucl").text == baseline_ucl

    by_testid(page, "logout").click()
    log_in(page, "erin", PASSWORDS["erin"])
    wait_until(page, text_is("current-user", "● erin"))
    # the legend never lies over the button, on a desktop or a portrait panel
    for width, height in ((1280, 800), (800, 1280)):
        set_viewport(page, width, height)
        try:
            assert wait_until(page, lambda d: legend_clear_of_button(d)) is True
        finally:
            set_viewport(page)
    by_testid(page, "recalc").click()
    assert by_testid(page, "recalc-status").text == ""  # armed, not sent
    by_testid(page, "recalc").click()
    wait_until(page, text_is("recalc-status", "Limits recalculated"))
    wait_until(page, lambda d: by_testid(d, "kpi-ucl").text != baseline_ucl)
    assert float(by_testid(page, "kpi-ucl").text) > float(baseline_ucl)
    screenshot(page, "hmi-recalculated")
    assert console_errors(page) == []


# ---- the chart families (docs/spc.md, docs/hmi.md "Chart families") -------------------------


def drawn(driver: Any) -> dict[str, Any]:
    """What the primary chart drew (its data-* hooks) and whether the secondary is shown."""
    out: dict[str, Any] = driver.execute_script(
        """
        const x = document.getElementById("x-chart");
        const nums = (t) => t ? t.split(" ").map((v) => v === "-" ? null : Number(v)) : null;
        return {family: x.dataset.family, points: Number(x.dataset.points),
                marks: x.dataset.marks, hollow: Number(x.dataset.hollowPoints),
                series: nums(x.dataset.series), series2: nums(x.dataset.series2),
                ucl: nums(x.dataset.uclSteps), lcl: nums(x.dataset.lclSteps),
                secondary: document.getElementById("r-chart").offsetParent !== null,
                title: document.getElementById("x-title").textContent,
                zonesLegend: !document.getElementById("legend-zones").hidden};
        """
    )
    return out


def key_figures(driver: Any) -> dict[str, str]:
    out: dict[str, str] = driver.execute_script(
        """
        const t = (id) => document.getElementById(id).textContent;
        const out = {};
        for (const id of ["kpi-ucl", "kpi-cl", "kpi-lcl", "kpi-usl", "kpi-target", "kpi-lsl"]) {
          out[t(id + "-label")] = t(id);
        }
        out.cap = document.querySelector('[data-testid="kpi-capline"]').textContent
          .replace(/\\s+/g, " ").trim();
        out.last = t("value-label") + " " + t("last-value");
        return out;
        """
    )
    return out


def publish_family(
    feed: Feed, prefix: str, char_id: int, meta_env: Any, limits_env: Any, history: list[Any]
) -> None:
    """Retained meta, limits and history of one characteristic, and its last sample."""
    feed.publish(f"{prefix}/char/{char_id}/meta", meta_env, retain=True)
    feed.publish(f"{prefix}/char/{char_id}/limits", limits_env, retain=True)
    feed.publish(
        f"{prefix}/char/{char_id}/history",
        envelope("history", {"characteristic_id": char_id, "samples": history}),
        retain=True,
    )
    feed.publish(f"{prefix}/char/{char_id}/sample", envelope("sample", history[-1]), retain=True)


def test_a_p_chart_draws_each_points_own_limits_as_steps(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    """A vision station: defectives of a varying number inspected (p-bar 0.05 at n-bar 50)."""
    browser = page
    p = plant.prefix
    sizes = [50, 40, 60, 50, 400, 30, 50, 80, 50, 45] * 3
    counts = [(round(n * 0.05) + (i % 3) - 1, n) for i, n in enumerate(sizes)]
    counts[0] = (2, 50)
    counts[17] = (12, 80)  # 0.15 beyond its own UCL (0.123 at n = 80)
    p_bar = 0.05
    se_bar = (p_bar * (1 - p_bar) / 50) ** 0.5
    history = p_chart(11, counts, p_bar, first_id=1, baseline=3)
    lim = family_limits(11, "p", p_bar, p_bar + 3 * se_bar, 0.0, se_bar, {"inspected": 50}, "p_bar")
    publish_family(feed, p, 11, family_meta(11, "Vision station rejects", "p"), lim, history)

    browser.get(plant.page_url(char="11"))
    wait_until(browser, attr_is("x-chart", "data-points", "30"))
    d = drawn(browser)
    assert d["family"] == "attribute"
    assert d["title"] == "Proportion defective (p) chart"
    assert d["secondary"] is False, "no secondary chart for a p chart"
    assert d["zonesLegend"] is False
    assert d["series"] == [s["statistic"] for s in history]
    # the steps: none for the baseline, then each point's own (narrower for more inspected)
    assert d["ucl"][:3] == [None, None, None]
    assert d["ucl"][4] == history[4]["ucl"]  # n = 400
    assert d["ucl"][5] == history[5]["ucl"]  # n = 30
    assert d["ucl"][4] < lim["payload"]["ucl"] < d["ucl"][5]
    assert d["lcl"][4] == history[4]["lcl"] > 0  # n = 400: above the floor
    assert d["lcl"][5] == 0.0  # n = 30: floored
    assert d["marks"] == "18:1"
    figures = key_figures(browser)
    assert figures["p̄"] == "0.050"
    assert figures["n̄"] == "50"
    assert "Cpk" not in figures["cap"]
    assert "Cp" not in figures["cap"]
    assert figures["cap"].startswith("p̄ 0.050")

    # a live sample: one more point, its own step
    live = p_chart(11, [(9, 100)], p_bar, first_id=31)[0]
    feed.publish(f"{p}/char/11/sample", envelope("sample", live))
    wait_until(browser, attr_is("x-chart", "data-last-sample-id", "31"))
    d = drawn(browser)
    assert d["points"] == 31
    assert d["ucl"][-1] == live["ucl"]
    assert d["series"][-1] == 0.09
    assert key_figures(browser)["last"] == "Last p 0.090"
    assert by_testid(browser, "last-time").text.endswith("9 of 100 defective")
    print("screenshot:", screenshot(browser, "hmi-family-p"))
    assert console_errors(browser) == []


def test_an_ewma_chart_draws_z_against_its_widening_limits(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    browser = page
    p = plant.prefix
    cl, sx = 10.0, 0.02
    values = [cl + 0.02 * (((i * 7) % 5) - 2) / 2 for i in range(40)]
    for i in range(30, 40):
        values[i] += 0.03  # a shift of 1.5 sigma: the EWMA sees it
    *history, live = ewma_chart(12, [*values, cl + 0.035], cl, sx, baseline=5)
    asym = 3 * sx * (0.2 / 1.8) ** 0.5
    lim = family_limits(
        12, "ewma", cl, cl + asym, cl - asym, sx, {"lambda": 0.2, "L": 3.0}, "moving_range"
    )
    m = family_meta(12, "Fill weight EWMA", "ewma", unit="g")
    publish_family(feed, p, 12, m, lim, history)

    browser.get(plant.page_url(char="12"))
    wait_until(browser, attr_is("x-chart", "data-points", "40"))
    d = drawn(browser)
    assert d["family"] == "ewma"
    assert d["secondary"] is False
    assert d["hollow"] == 5, "the baseline samples, hollow at their values"
    assert d["series"][:5] == [None] * 5
    assert d["series"][5:] == [s["statistic"] for s in history[5:]]
    # widening: the first limit after the baseline is the narrowest, later ones near the asymptote
    assert d["ucl"][5] == history[5]["ucl"]
    assert d["ucl"][30] == history[30]["ucl"]
    assert d["ucl"][5] - cl < d["ucl"][6] - cl < d["ucl"][30] - cl < asym
    assert d["lcl"][5] == history[5]["lcl"]
    failing = [str(s["sample_id"]) + ":1" for s in history if s["failed_rules"]]
    assert failing, "the shift is signalled"
    assert d["marks"].split(" ")[0] == failing[0]
    figures = key_figures(browser)
    assert figures["cap"] == "λ 0.2 · L 3"
    assert figures["UCL"] == f"{cl + asym:.3f}"
    assert figures["last"] == f"Last z {history[-1]['statistic']:.3f}"

    # a live sample: one more z and its own limit
    feed.publish(f"{p}/char/12/sample", envelope("sample", live))
    wait_until(browser, attr_is("x-chart", "data-last-sample-id", str(live["sample_id"])))
    d = drawn(browser)
    assert d["points"] == 41
    assert d["series"][-1] == live["statistic"]
    assert d["ucl"][-1] == live["ucl"]
    assert d["lcl"][-1] == live["lcl"]
    print("screenshot:", screenshot(browser, "hmi-family-ewma"))
    assert console_errors(browser) == []


def test_a_cusum_chart_draws_both_sums_against_h(page: Any, plant: HmiPlant, feed: Feed) -> None:
    browser = page
    p = plant.prefix
    cl, sx = 25.0, 0.01
    values = [cl + 0.01 * (((i * 3) % 5) - 2) / 2 for i in range(36)]
    for i in range(12, 20):
        values[i] -= 0.012  # a downward shift: the lower sum grows
    for i in range(26, 36):
        values[i] += 0.015  # then an upward one
    *history, live = cusum_chart(13, [*values, cl + 0.02], cl, sx, baseline=4)
    lim = family_limits(13, "cusum", cl, 5 * sx, 0.0, sx, {"k": 0.5, "h": 5.0}, "moving_range")
    publish_family(feed, p, 13, family_meta(13, "Bore CUSUM", "cusum", unit="mm"), lim, history)

    browser.get(plant.page_url(char="13"))
    wait_until(browser, attr_is("x-chart", "data-points", "32"))  # the baseline not drawn
    d = drawn(browser)
    assert d["family"] == "cusum"
    assert d["secondary"] is False
    assert d["series"][:4] == [None] * 4
    assert d["series"][4:] == [s["cusum_upper"] for s in history[4:]]
    # the lower sum mirrored below zero, as Minitab draws it
    assert d["series2"][4:] == [-s["cusum_lower"] if s["cusum_lower"] else 0 for s in history[4:]]
    assert min(d["series2"][4:]) < -0.05
    assert max(d["series"][4:]) > 0.05
    assert d["ucl"][4] == d["ucl"][35] == 0.05
    assert d["lcl"][4] == d["lcl"][35] == -0.05
    assert d["marks"].split(" ")[0] == next(
        f"{s['sample_id']}:1" for s in history if s["failed_rules"]
    )
    figures = key_figures(browser)
    assert figures["H"] == "0.050"
    assert figures["CL"] == "25.000"
    assert figures["cap"] == "k 0.5 · h 5"
    last = history[-1]
    assert figures["last"] == f"Last x {last['value']:.3f}"
    assert by_testid(browser, "last-time").text.endswith(
        f"C⁺ {last['cusum_upper']:.3f} · C⁻ {last['cusum_lower']:.3f}"
    )

    # a live sample: both sums one point further
    feed.publish(f"{p}/char/13/sample", envelope("sample", live))
    wait_until(browser, attr_is("x-chart", "data-last-sample-id", str(live["sample_id"])))
    d = drawn(browser)
    assert d["points"] == 33
    assert d["series"][-1] == live["cusum_upper"]
    assert d["series2"][-1] == (-live["cusum_lower"] or 0.0)  # mirrored (never -0)
    assert d["ucl"][-1] == live["ucl"]
    print("screenshot:", screenshot(browser, "hmi-family-cusum"))

    # back to a Shewhart characteristic on the same page: its secondary chart returns
    feed.publish(f"{p}/char/14/meta", meta(14, "Shaft OD"), retain=True)
    feed.publish(f"{p}/char/14/limits", limits(14, 10.0, 0.02), retain=True)
    shaft = samples(14, [10.0 + 0.01 * (i % 3) for i in range(10)], first_id=900)
    feed.publish(
        f"{p}/char/14/history",
        envelope("history", {"characteristic_id": 14, "samples": shaft}),
        retain=True,
    )
    wait_until(browser, lambda b: len(all_by_testid(b, "char-item")) == 2)
    all_by_testid(browser, "char-item")[1].click()
    wait_until(browser, attr_is("x-chart", "data-points", "10"))
    d = drawn(browser)
    assert d["family"] == "shewhart"
    assert d["secondary"] is True
    assert d["zonesLegend"] is True
    assert d["ucl"] is None
    assert key_figures(browser)["cap"].startswith("Cpk 0.95")
    assert by_testid(browser, "r-chart").get_attribute("data-points") == "9"
    assert console_errors(browser) == []


# ---- panels of every size, and the overview (docs/hmi.md "Layout", "Overview") -------------

LINE = [
    # id, name, centre, sigma, rule-1 failure at index (or None), open alarms
    (1, "Shaft OD", 10.0, 0.02, 20, 2),
    (2, "Bore ID", 25.0, 0.01, None, 0),
    (3, "Fill weight", 503.0, 1.0, 27, 1),
    (4, "Torque", 12.5, 0.1, None, 0),
]


def publish_line(feed: Feed, prefix: str, line: list[tuple[Any, ...]]) -> dict[int, list[Any]]:
    """Retained meta, limits, history, sample and alarms of each characteristic of ``line``,
    as the bridge publishes them; the published histories by id."""
    feed.publish(
        f"{prefix}/bridge/status",
        {"online": True, "timestamp": iso(datetime.now(UTC))},
        retain=True,
    )
    published = {}
    for char_id, name, centre, sigma, bad, open_alarms in line:
        values = [round(centre + sigma * ((i * 7) % 5 - 2) / 2, 6) for i in range(30)]
        failing = {}
        if bad is not None:
            values[bad] = round(centre + 4 * sigma, 6)
            failing[bad] = [1]
        history = samples(char_id, values, first_id=char_id * 1000, failing=failing)
        published[char_id] = history
        usl, lsl = centre + 6 * sigma, centre - 6 * sigma
        feed.publish(
            f"{prefix}/char/{char_id}/meta",
            meta(char_id, name, usl=usl, lsl=lsl, target=centre),
            retain=True,
        )
        feed.publish(f"{prefix}/char/{char_id}/limits", limits(char_id, centre, sigma), retain=True)
        feed.publish(
            f"{prefix}/char/{char_id}/history",
            envelope("history", {"characteristic_id": char_id, "samples": history}),
            retain=True,
        )
        feed.publish(
            f"{prefix}/char/{char_id}/sample", envelope("sample", history[-1]), retain=True
        )
        alarms = [
            violation(char_id, char_id * 100 + k, history[-1 - k]["sample_id"])
            for k in range(open_alarms)
        ]
        feed.publish(
            f"{prefix}/char/{char_id}/alarms",
            envelope(
                "alarms",
                {"characteristic_id": char_id, "violations": alarms, "open_count": open_alarms},
            ),
            retain=True,
        )
    return published


LAYOUT_PROBE = """
const vw = innerWidth, vh = innerHeight;
const rectOf = (e) => { const r = e.getBoundingClientRect();
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width}; };
// a control is reachable: scrolled into view, it lies wholly inside the viewport
// (centred: "nearest" may leave a fraction of a pixel outside, the scroll offset being whole)
const reachable = (e) => { e.scrollIntoView({block: "center", inline: "nearest"});
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.right <= vw && r.top >= 0 && r.bottom <= vh; };
const login = document.querySelector('[data-testid="login-submit"]');
const ack = document.querySelector('[data-testid="ack-button"]');
const controls = {login: reachable(login), ack: reachable(ack)};
window.scrollTo(0, 0);
// a key figure is clipped when its text is wider than its box
const figures = ["last-value", "process-state", "last-time", "last-rules", "kpi-capline",
  "kpi-ucl", "kpi-cl", "kpi-lcl", "kpi-usl", "kpi-target", "kpi-lsl"];
const clipped = [];
for (const id of figures) {
  const e = document.querySelector('[data-testid="' + id + '"]');
  const box = id === "last-value" ? e.parentElement : e;
  if (box.scrollWidth > box.clientWidth) clipped.push(id + ": " + box.textContent.trim());
}
// no panel scrolls sideways either (a control pushed out of its column)
for (const sel of [".topbar", ".chars", ".charts", ".alarms", ".chart-head"]) {
  for (const e of document.querySelectorAll(sel)) {
    if (e.scrollWidth > e.clientWidth) clipped.push("panel " + sel);
  }
}
const kpis = document.querySelector(".kpis");
for (const k of kpis.children) {
  if (k.scrollWidth > k.clientWidth) clipped.push("panel " + k.className);
}
return {vw, vh, scrollWidth: document.documentElement.scrollWidth, controls, clipped,
        chart: rectOf(document.querySelector('[data-testid="x-chart"]')),
        secondary: rectOf(document.querySelector('[data-testid="r-chart"]'))};
"""


@pytest.mark.parametrize("size", [(800, 1280), (1280, 800), (1400, 900), (1920, 1080)])
def test_every_panel_size_fits_without_horizontal_scrolling(
    page: Any, plant: HmiPlant, feed: Feed, size: tuple[int, int]
) -> None:
    width, height = size
    publish_line(feed, plant.prefix, LINE)
    set_viewport(page, width, height)
    try:
        page.get(plant.page_url(char="1"))
        wait_until(page, attr_is("x-chart", "data-points", "30"))
        wait_until(page, lambda d: len(all_by_testid(d, "ack-button")) > 0)
        wait_until(page, text_is("process-state", "IN CONTROL"))
        probe = page.execute_script(LAYOUT_PROBE)
        print("screenshot:", screenshot(page, f"hmi-viewport-{width}x{height}"))
        assert (probe["vw"], probe["vh"]) == (width, height)
        assert probe["scrollWidth"] <= width, probe
        assert probe["controls"] == {"login": True, "ack": True}, probe
        assert probe["clipped"] == [], probe
        # the charts use the width: at least 55 % of the screen, and inside it
        for chart in (probe["chart"], probe["secondary"]):
            assert chart["width"] >= 0.55 * width, probe
            assert chart["left"] >= 0, probe
            assert chart["right"] <= width, probe
        # logged in, a cause chosen (the action and comment open), the older-data bar and the
        # Pareto shown: still nothing sideways, and the controls reachable
        log_in(page, "alice", PASSWORDS["alice"])
        wait_until(page, text_is("current-user", "● alice"))
        choose_cause(by_testid(page, "alarm-row"), "Tool Change")
        wait_until(page, lambda d: by_testid(d, "ack-comment").is_displayed())
        wait_until(page, lambda d: by_testid(d, "older").is_displayed())
        by_testid(page, "pareto-title").click()
        busy = page.execute_script(
            LAYOUT_PROBE.replace('"login-submit"', '"logout"').replace(
                "const controls = {login: reachable(login), ack: reachable(ack)};",
                "const controls = {login: reachable(login), ack: reachable(ack),"
                " older: reachable(document.querySelector('[data-testid=\"older-load\"]')),"
                " comment: reachable(document.querySelector('[data-testid=\"ack-comment\"]'))};",
            )
        )
        print("screenshot:", screenshot(page, f"hmi-viewport-{width}x{height}-logged-in"))
        assert busy["scrollWidth"] <= width, busy
        assert busy["controls"] == {"login": True, "ack": True, "older": True, "comment": True}
        assert busy["clipped"] == [], busy
        assert console_errors(page) == []
    finally:
        set_viewport(page)


def test_the_overview_shows_every_characteristic_and_opens_its_chart(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    # a wall screen: twelve characteristics, every tile on screen at once
    line = LINE + [
        (i, f"Gauge {i}", 5.0 + i, 0.04, None if i % 3 else 25, i % 2) for i in range(5, 13)
    ]
    published = publish_line(feed, plant.prefix, line)
    set_viewport(page, 1920, 1080)
    try:
        page.get(plant.page_url(view="overview"))
        wait_until(page, lambda d: len(all_by_testid(d, "tile")) == len(line))
        # every tile's sparkline has its retained history, though no chart is on screen
        wait_until(
            page,
            lambda d: all(
                s.get_attribute("data-points") == "30" for s in all_by_testid(d, "tile-spark")
            ),
        )
        tiles = page.execute_script(
            """
            return [...document.querySelectorAll('[data-testid="tile"]')].map((t) => {
              const r = t.getBoundingClientRect();
              const q = (id) => t.querySelector('[data-testid="' + id + '"]');
              return {id: t.dataset.charId, name: q("tile-name").textContent,
                      value: q("tile-value").textContent, state: q("tile-state").dataset.state,
                      alarms: q("tile-alarms").hidden ? "0" : q("tile-alarms").textContent,
                      failed: q("tile-spark").dataset.failed,
                      clipped: [t, q("tile-name"), q("tile-value").parentElement]
                        .filter((e) => e.scrollWidth > e.clientWidth).length,
                      inside: r.left >= 0 && r.top >= 0 && r.right <= innerWidth
                        && r.bottom <= innerHeight};
            });
            """
        )
        print("screenshot:", screenshot(page, "hmi-overview-1920x1080"))
        expected = []
        for char_id, name, _centre, sigma, bad, open_alarms in line:
            last = published[char_id][-1]
            decimals = math.ceil(-math.log10(sigma) + 0.7)  # docs/hmi.md "Numbers"
            expected.append(
                {
                    "id": str(char_id),
                    "name": name,
                    "value": f"{last['value']:.{decimals}f}",
                    "state": "in_control",
                    "alarms": str(open_alarms),
                    "failed": "0" if bad is None else "1",
                    "clipped": 0,
                    "inside": True,
                }
            )
        assert tiles == expected
        assert page.execute_script("return document.documentElement.scrollWidth") <= 1920
        assert by_testid(page, "charts").is_displayed() is False

        # a click on a tile opens that characteristic's chart
        page.find_element(By.CSS_SELECTOR, '[data-testid="tile"][data-char-id="3"]').click()
        wait_until(page, text_is("char-title", "Fill weight"))
        wait_until(page, attr_is("x-chart", "data-points", "30"))
        assert by_testid(page, "overview").is_displayed() is False
        assert by_testid(page, "x-chart").get_attribute("data-marks") == "3027:1"
        assert "view=overview" not in page.current_url
        assert "char=3" in page.current_url
        # and back
        by_testid(page, "overview-button").click()
        wait_until(page, lambda d: by_testid(d, "overview").is_displayed())
        assert console_errors(page) == []
    finally:
        set_viewport(page)


def test_spec_limits_on_the_x_chart_and_a_histogram_with_the_capability(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    values = [10.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(30)]
    values[25] = 10.07  # beyond UCL 10.06 and USL 10.065
    history = samples(1, values, first_id=301, failing={25: [1]})
    feed.publish(
        f"{p}/char/1/meta", meta(1, "Shaft OD", usl=10.065, lsl=9.935, target=10.0), retain=True
    )
    feed.publish(f"{p}/char/1/limits", limits(1, 10.0, 0.02), retain=True)
    feed.publish(
        f"{p}/char/1/history",
        envelope("history", {"characteristic_id": 1, "samples": history}),
        retain=True,
    )
    page.get(plant.page_url())
    wait_until(page, attr_is("x-chart", "data-points", "30"))
    x = by_testid(page, "x-chart")
    assert x.get_attribute("data-spec") == "USL 10.065 LSL 9.935"
    assert x.get_attribute("data-out-of-spec") == "326"  # the one reading beyond USL

    by_testid(page, "hist-toggle").click()
    hist = wait_until(
        page,
        lambda d: (
            by_testid(d, "histogram").get_attribute("data-readings") == "30"
            and by_testid(d, "histogram")
        ),
    )
    assert sum(int(c) for c in hist.get_attribute("data-bins").split()) == 30
    assert hist.get_attribute("data-spec") == "LSL 9.935 T 10.000 USL 10.065"
    assert float(hist.get_attribute("data-sigma")) == 0.02  # the limits' sigma
    assert float(hist.get_attribute("data-mean")) == pytest.approx(sum(values) / 30)
    # the capability the bridge computed (control_limits.capability), not the page's own
    assert (
        by_testid(page, "hist-cap").text == "Cp 1.10 · Cpk 0.95 · Pp 1.00 · Ppk 0.90 · 30 readings"
    )
    assert by_testid(page, "r-chart").is_displayed() is False
    assert page.find_element(By.ID, "r-title").text == "Histogram"
    # a live sample is counted in
    live = samples(1, [10.0], first_id=400)[0]
    feed.publish(f"{p}/char/1/sample", envelope("sample", live))
    wait_until(page, attr_is("histogram", "data-readings", "31"))
    print("screenshot:", screenshot(page, "hmi-spec-histogram"))
    by_testid(page, "hist-toggle").click()
    wait_until(page, lambda d: by_testid(d, "r-chart").is_displayed())
    assert console_errors(page) == []


# ---- a point explained, limits by version, roles, causes, older data -------------------------


def hover_point(driver: Any, testid: str, index: int, *, click: bool = False) -> None:
    """Move the mouse over the ``index``-th sample of a chart (its x, the plot's middle), and
    click there when asked."""
    from selenium.webdriver.common.action_chains import ActionChains

    chart = by_testid(driver, testid)
    x = driver.execute_script("return arguments[0].pointX(arguments[1])", chart, index)
    width = chart.size["width"]
    actions = ActionChains(driver).move_to_element_with_offset(chart, int(x - width / 2), 0)
    if click:
        actions = actions.click()
    actions.perform()


def tooltip(driver: Any) -> dict[str, str]:
    """The shown tooltip's rows by key (spc.js pointDetail), with its sample id as ``#``."""
    rows: dict[str, str] = driver.execute_script(
        """
        const tip = [...document.querySelectorAll('[data-testid="point-tip"]')]
          .find((t) => !t.hidden);
        if (!tip) return null;
        const out = {"#": tip.dataset.sampleId, "pinned": tip.dataset.pinned};
        for (const row of tip.querySelectorAll(".tip-row")) {
          out[row.dataset.key] = row.querySelector("b").textContent;
        }
        return out;
        """
    )
    return rows


def versioned_limits(char_id: int, version: int, cl: float, sigma: float) -> dict[str, Any]:
    lim = limits(char_id, cl, sigma)
    lim["payload"]["version"] = version
    return lim


def test_a_points_tooltip_says_what_the_published_sample_says(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    """Every point explained (time, readings, statistic, zone, rules, context, excluded, its
    limits); excluded points hollow; each point against the limits of its own version, the
    change marked; the out-of-spec point ringed."""
    p = plant.prefix
    values = [round(10.0 + 0.01 * ((i * 7) % 5 - 2), 4) for i in range(30)]
    values[24] = 10.12  # beyond USL and UCL
    history = samples(1, values, first_id=701, failing={24: [1, 5]})
    for i, s in enumerate(history):
        s["limits_version"] = 1 if i < 20 else 2
        s["excluded"] = i == 4
        s["out_of_spec"] = i == 24
        s["context"] = {"part": f"A-{100 + i}", "lot": "L42", "shift": "B", "operator": "kim"}
    history[24]["zone"] = "beyond_ucl"
    history[24]["range_failed_rules"] = [1]
    feed.publish(
        f"{p}/char/1/meta", meta(1, "Shaft OD", usl=10.1, lsl=9.9, target=10.0), retain=True
    )
    feed.publish(f"{p}/char/1/limits", versioned_limits(1, 1, 10.0, 0.02), retain=True)
    feed.publish(
        f"{p}/char/1/history",
        envelope("history", {"characteristic_id": 1, "samples": history}),
        retain=True,
    )
    page.get(plant.page_url())
    wait_until(page, attr_is("x-chart", "data-points", "30"))
    wait_until(page, text_is("kpi-ucl", "10.060"))
    # the recalculation: version 2, seen live (the page keeps every version it has seen)
    feed.publish(f"{p}/char/1/limits", versioned_limits(1, 2, 10.01, 0.03), retain=True)
    wait_until(page, text_is("kpi-ucl", "10.100"))
    chart = by_testid(page, "x-chart")
    wait_until(page, attr_is("x-chart", "data-version-changes", "721:v2"))
    ucl_steps = chart.get_attribute("data-ucl-steps").split()
    assert ucl_steps == ["10.06"] * 20 + ["10.1"] * 10
    assert chart.get_attribute("data-cl-steps").split() == ["10"] * 20 + ["10.01"] * 10
    assert chart.get_attribute("data-hollow-samples") == "705"  # the excluded one
    assert chart.get_attribute("data-out-of-spec") == "725"
    assert chart.get_attribute("data-marks") == "725:1,5"

    hover_point(page, "x-chart", 24)
    tip = wait_until(page, lambda d: (t := tooltip(d)) and t["#"] == "725" and t)
    published = history[24]
    assert tip["sample"] == "#725"
    assert tip["readings"] == f"{published['values'][0]} mm"
    assert tip["statistic"] == f"{published['value']:.3f} mm"
    assert tip["zone"] == "beyond UCL"
    assert tip["rules"] == "X rule 1, 5; MR rule 1"
    assert tip["spec"] == "OUT OF SPEC"
    assert tip["context.part"] == published["context"]["part"]
    assert tip["context.lot"] == "L42"
    assert tip["context.shift"] == "B"
    assert tip["context.operator"] == "kim"
    assert tip["excluded"] == "no"
    assert tip["limits"] == "version 2 (LCL 9.920 · UCL 10.100)"
    shown_time = page.execute_script(
        "return new Date(arguments[0]).toLocaleString([], {year: 'numeric', month: 'short',"
        " day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',"
        " hourCycle: 'h23'})",
        published["timestamp"],
    )
    assert tip["time"] == shown_time
    screenshot(page, "hmi-point-tooltip")

    # an excluded point of version 1, pinned by a click: it stays while the mouse moves on
    hover_point(page, "x-chart", 4)
    wait_until(page, lambda d: (t := tooltip(d)) and t["#"] == "705")
    hover_point(page, "x-chart", 4, click=True)
    pinned = wait_until(page, lambda d: (t := tooltip(d)) and t["pinned"] == "true" and t)
    assert pinned["excluded"] == "yes (not in limit calculations)"
    assert pinned["limits"] == "version 1 (LCL 9.940 · UCL 10.060)"
    hover_point(page, "x-chart", 10)
    assert tooltip(page)["#"] == "705"
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    wait_until(page, lambda d: (t := tooltip(d)) is None or t["#"] != "705")
    assert console_errors(page) == []


def role_message(user: str, role: str, may: list[str]) -> dict[str, Any]:
    return envelope("role", {"user": user, "role": role, "may": may})


def test_the_role_message_decides_what_is_offered(page: Any, plant: HmiPlant, feed: Feed) -> None:
    """docs/hmi.md "Roles": the bridge's retained `reply/<user>/role`; without one, every
    control is offered (and a refusal is said in plain words)."""
    p = plant.prefix
    publish_line(feed, p, LINE[:2])
    feed.publish(
        f"{p}/reply/alice/role", role_message("alice", "hmi", ["acknowledge", "query"]), retain=True
    )
    feed.publish(
        f"{p}/reply/erin/role",
        role_message("erin", "engineer", ["acknowledge", "recalculate", "query"]),
        retain=True,
    )
    page.get(plant.page_url(char="1"))
    wait_until(page, attr_is("x-chart", "data-points", "30"))

    def offered(d: Any) -> dict[str, bool]:
        shown: dict[str, bool] = d.execute_script(
            """const vis = (id) => { const e = document.querySelector('[data-testid="' + id + '"]');
                 return !!e && e.offsetParent !== null; };
               const form = document.querySelector('[data-testid="alarm-row"] .alarm-actions');
               return {recalc: vis("recalc"), older: vis("older"),
                       ack: !!form && form.offsetParent !== null};"""
        )
        return shown

    def session_of(user: str, role: str) -> None:
        if by_testid(page, "logout").is_displayed():
            by_testid(page, "logout").click()
            wait_until(page, lambda d: by_testid(d, "login-submit").is_displayed())
        log_in(page, user, PASSWORDS[user])
        wait_until(page, text_is("current-user", f"● {user}"))
        wait_until(page, attr_is("current-user", "data-role", role))

    session_of("alice", "hmi")
    assert wait_until(page, lambda d: offered(d) == {"recalc": False, "older": True, "ack": True})
    screenshot(page, "hmi-role-hmi")
    session_of("erin", "engineer")
    assert wait_until(page, lambda d: offered(d) == {"recalc": True, "older": True, "ack": True})
    # bob has no role message: everything is offered; the broker decides
    by_testid(page, "logout").click()
    wait_until(page, lambda d: by_testid(d, "login-submit").is_displayed())
    log_in(page, "bob", PASSWORDS["bob"])
    wait_until(page, text_is("current-user", "● bob"))
    assert wait_until(page, lambda d: offered(d) == {"recalc": True, "older": True, "ack": True})
    assert by_testid(page, "current-user").get_attribute("data-role") == ""
    assert console_errors(page) == []


def test_the_pareto_of_causes_comes_from_the_retained_causes(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    p = plant.prefix
    publish_line(feed, p, LINE[:2])
    counts = [
        {"cause": "Measurement Error", "count": 2},
        {"cause": "Tool Change", "count": 7},
        {"cause": "Other", "count": 1},
    ]
    feed.publish(
        f"{p}/char/1/causes",
        envelope("causes", {"characteristic_id": 1, "days": 30, "counts": counts}),
        retain=True,
    )
    page.get(plant.page_url(char="1"))
    wait_until(page, attr_is("x-chart", "data-points", "30"))
    wait_until(page, text_is("pareto-title", "Causes, last 30 days (10)"))
    by_testid(page, "pareto-title").click()

    def rows(d: Any) -> list[str]:
        """Read in one script: the list is redrawn when the retained causes change."""
        found: list[str] = d.execute_script(
            """return [...document.querySelectorAll('[data-testid="pareto-row"]')].map(
                 (r) => r.innerText.replace(/\\s+/g, " ").trim());"""
        )
        return found

    assert wait_until(page, rows) == [
        "Tool Change 7 · 70%",
        "Measurement Error 2 · 90%",
        "Other 1 · 100%",
    ]
    screenshot(page, "hmi-pareto")
    # another characteristic without acknowledged alarms, then an update of the first
    all_by_testid(page, "char-item")[1].click()
    wait_until(page, text_is("pareto-title", "Causes"))
    assert rows(page) == []
    all_by_testid(page, "char-item")[0].click()
    feed.publish(
        f"{p}/char/1/causes",
        envelope(
            "causes",
            {
                "characteristic_id": 1,
                "days": 30,
                "counts": [{"cause": "Other", "count": 11}, *counts[:2]],
            },
        ),
        retain=True,
    )
    wait_until(page, lambda d: rows(d)[:1] == ["Other 11 · 55%"])
    assert console_errors(page) == []


def query_answer(char_id: int, first: int, count: int, next_before: int | None) -> dict[str, Any]:
    history = samples(char_id, [10.0 + 0.01 * (i % 3) for i in range(count)], first_id=first)
    for s in history:
        s["excluded"] = False
    return envelope(
        "query_result",
        {"characteristic_id": char_id, "samples": history, "next_before_sample_id": next_before},
    )


def test_older_data_is_paged_through_the_query_command(
    page: Any, plant: HmiPlant, feed: Feed
) -> None:
    """docs/topics.md "query": the page asks for the samples before the oldest it holds, pages
    on with `next_before_sample_id`, asks for a time range, and goes back to live.

    The test plays the bridge (the bridge's side is tests/e2e/test_contract_context_query.py);
    the page is logged in as an `hmi` user, whom the broker lets publish `cmd/query/alice`
    only (docs/security.md)."""
    p = plant.prefix
    published = publish_line(feed, p, LINE[:1])
    first_held = published[1][0]["sample_id"]
    feed.subscribe(f"{p}/cmd/query/+")
    page.get(plant.page_url(char="1"))
    wait_until(page, attr_is("x-chart", "data-points", "30"))
    assert not by_testid(page, "older").is_displayed()  # anonymous: no reply topic
    log_in(page, "alice", PASSWORDS["alice"])
    wait_until(page, text_is("current-user", "● alice"))
    wait_until(page, lambda d: by_testid(d, "older").is_displayed())
    topic = f"{p}/cmd/query/alice"

    by_testid(page, "older-load").click()
    command = feed.expect(lambda m: m.topic == topic)
    assert json.loads(command.payload) == {
        "characteristic_id": 1,
        "before_sample_id": first_held,
        "limit": 500,
    }
    answer_as_bridge(feed, command, query_answer(1, first_held - 40, 40, first_held - 40))
    wait_until(page, attr_is("x-chart", "data-points", "40"))
    assert by_testid(page, "x-chart").get_attribute("data-last-sample-id") == str(first_held - 1)
    assert by_testid(page, "older-status").text == (
        f"40 older samples, #{first_held - 40}–#{first_held - 1}"
    )
    more = by_testid(page, "older-more")
    assert more.is_enabled()
    more.click()
    command = feed.expect(lambda m: m.topic == topic)
    assert json.loads(command.payload) == {
        "characteristic_id": 1,
        "before_sample_id": first_held - 40,
        "limit": 500,
    }
    answer_as_bridge(feed, command, query_answer(1, first_held - 60, 20, None))
    wait_until(page, attr_is("x-chart", "data-points", "60"))
    assert by_testid(page, "older-status").text.endswith("(no older)")
    assert not more.is_enabled()
    screenshot(page, "hmi-older-data")

    # a time range; the bridge's refusal in its own words
    page.execute_script(
        "document.getElementById('older-from').value = '2026-12-07T10:00:00';"
        "document.getElementById('older-to').value = '2026-12-07T11:00:00';"
    )
    by_testid(page, "older-load").click()
    command = feed.expect(lambda m: m.topic == topic)
    expected = page.execute_script(
        "return ['2026-12-07T10:00:00', '2026-12-07T11:00:00'].map((t) =>"
        " new Date(t).toISOString().replace(/\\.\\d{3}Z$/, 'Z'))"
    )
    assert json.loads(command.payload) == {
        "characteristic_id": 1,
        "from": expected[0],
        "to": expected[1],
        "limit": 500,
    }
    answer_as_bridge(feed, command, {"ok": False, "error": "'from' is after 'to'"})
    wait_until(page, text_is("older-status", "Loading failed: 'from' is after 'to'"))
    assert by_testid(page, "x-chart").get_attribute("data-points") == "60"  # kept

    by_testid(page, "older-live").click()
    wait_until(page, attr_is("x-chart", "data-points", "30"))
    assert not by_testid(page, "older-live").is_displayed()
    assert console_errors(page) == []
