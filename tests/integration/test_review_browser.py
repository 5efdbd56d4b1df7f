"""The review app in a real browser: headless Debian chromium driven by Playwright, against a real
uvicorn server, a real broker and a real Redis."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import redis

from demo.local import free_port, wait_for_port
from kafka_io import OutRecord, RecordProducer, ensure_topics
from review.app import create_app
from review.queue import ReviewQueue
from review.users import UserStore
from tests.helpers import ROOT, read_topic, values, wait_until
from tests.integration.test_review_app import PASSWORD, request_for

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "tests" / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def served(settings):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make tools` installs it")
        pytest.skip("chromium not installed (`make tools` installs it)")
    import uvicorn

    ensure_topics(settings, [settings.topic_labels, settings.topic_review])
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(r, settings.redis_prefix)
    users.add("rita", "reviewer", PASSWORD)
    users.add("rob", "reviewer", PASSWORD)
    app = create_app(settings, secret="browser-secret", consume=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for_port(port, timeout_s=20)
    yield settings, f"http://127.0.0.1:{port}", ReviewQueue(r, settings.redis_prefix)
    server.should_exit = True
    thread.join(timeout=10)


def _login(page, base, name):
    page.goto(base + "/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_a_reviewer_logs_in_labels_the_top_item_and_the_label_reaches_the_broker(served):
    from playwright.sync_api import sync_playwright

    settings, base, queue = served
    # review requests arrive through the real broker and the app's own consumer
    producer = RecordProducer(settings)
    producer.send_all([
        OutRecord(settings.topic_review, "c-top", request_for(
            "c-top", text="I have the pills in my hand. My name is Dana, call me at 555-201-3344",
            score=0.97).to_bytes()),
        OutRecord(settings.topic_review, "c-mid", request_for("c-mid", text="I feel hopeless", score=0.4).to_bytes()),
        OutRecord(settings.topic_review, "c-low", request_for("c-low", text="nice walk today", reason="sampled",
                                                              score=0.02).to_bytes()),
    ])
    producer.close()
    assert wait_until(lambda: len(queue.pending()) == 3, timeout_s=30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        _login(page, base, "rita")
        page.wait_for_url("**/queue")
        rows = page.locator("table.queue tr td:first-child").all_inner_texts()
        assert rows == ["c-top", "c-mid", "c-low"]
        page.screenshot(path=str(SHOTS / "review-queue.png"), full_page=True)
        page.click("#claim-next")
        page.wait_for_url("**/conversations/c-top")
        assert page.locator(".turn.flagged").count() == 1
        text = page.locator(".turn.user .text").first.inner_text()
        assert "Dana" not in text and "[name]" in text and "[phone]" in text
        page.screenshot(path=str(SHOTS / "review-conversation.png"), full_page=True)
        page.check("input[name=level][value=imminent]")
        page.fill("input[name=first_crisis_turn]", "0")
        page.click("#label-form button[type=submit]")
        page.wait_for_url("**/queue?saved=c-top")
        assert "confirmed by the broker" in page.content()
        browser.close()
    labels = values(read_topic(settings, settings.topic_labels, expect=1))
    assert [(lab["conversation_id"], lab["level"], lab["reviewer_id"]) for lab in labels] == [
        ("c-top", "imminent", "rita")]


def test_the_second_reviewer_of_a_double_labelled_item_does_not_see_the_first_label(served):
    from playwright.sync_api import sync_playwright

    settings, base, queue = served
    queue.add(request_for("c-two", text="I want to end my life"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        first = browser.new_context().new_page()
        _login(first, base, "rita")
        first.goto(base + "/conversations/c-two")
        first.check("input[name=level][value=high]")
        first.click("#label-form button[type=submit]")
        first.wait_for_url("**/queue?saved=c-two")
        second = browser.new_context().new_page()
        _login(second, base, "rob")
        second.goto(base + "/conversations/c-two")
        content = second.content()
        assert "rita" not in content and "id=\"labels\"" not in content
        assert second.locator("#label-form").count() == 1  # rob can give the second, blind label
        browser.close()
    time.sleep(0.1)
    assert queue.get("c-two").stage == "second"


def test_a_clinician_sees_the_urgent_item_first_records_the_outcome_and_ends_the_handoff(served):
    """Issue 22 in the browser: the urgent item is on top with its deadline; the clinician records the referral
    and gives the conversation back to the AI."""
    from playwright.sync_api import sync_playwright

    from safety_gate.handoff import HandoffStore

    settings, base, queue = served
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    queue.add(request_for("c-flag", text="I feel hopeless", score=0.9))
    queue.add(request_for("c-urgent", text="I have the pills in my hand", reason="urgent", score=0.99))
    handoffs = HandoffStore(r, settings.redis_prefix)
    handoffs.start("c-urgent", by="vigil-scorer", reason="urgent review (score)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        _login(page, base, "rita")
        page.wait_for_url("**/queue")
        assert page.locator("table.queue tr td:first-child").all_inner_texts()[0] == "c-urgent"
        assert "URGENT: person at risk" in page.locator("table.queue tr.urgent").inner_text()
        assert page.locator("table.queue tr.urgent td.deadline").inner_text().endswith("UTC")
        page.goto(base + "/conversations/c-urgent")
        assert "Handed to a human" in page.locator("#handoff-state").inner_text()
        page.screenshot(path=str(SHOTS / "review-urgent.png"), full_page=True)
        page.select_option("#outcome-form select[name=outcome]", "referred")
        page.fill("#outcome-form input[name=note]", "crisis team took over")
        page.click("#outcome-form button[type=submit]")
        page.wait_for_url("**/conversations/c-urgent")
        assert "referred to a professional service" in page.locator("#outcome").inner_text()
        page.fill("#handoff-end-form input[name=reason]", "safety plan agreed")
        page.click("#handoff-end-form button[type=submit]")
        page.wait_for_url("**/conversations/c-urgent")
        assert "The AI answers this conversation" in page.locator("#handoff-state").inner_text()
        browser.close()
    assert handoffs.get("c-urgent") is None
    assert [e["action"] for e in handoffs.audit()][:1] == ["handoff_end"]


def test_the_crisis_team_claims_a_case_in_the_browser_and_its_outcome_closes_it(served):
    """Issue 34 in the browser: the urgent case is on the Urgent cases page with its clock; one clinician claims
    it (a colleague then sees who holds it and no claim button), records the outcome, and the case is closed."""
    from playwright.sync_api import sync_playwright

    from incidents.cases import CaseStore

    settings, base, queue = served
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())
    cases = CaseStore(r, settings.redis_prefix)
    queue.add(request_for("c-case", text="I have the pills in my hand", reason="urgent", score=0.99))
    cases.open("c-case", 2, 0.99, "imminent phrase", by="vigil-scorer")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        rita = browser.new_page(viewport={"width": 1100, "height": 800})
        _login(rita, base, "rita")
        rita.wait_for_url("**/queue")
        rita.click("nav a[href='/cases']")
        row = rita.locator("tr", has_text="CASE-c-case")
        assert "s left" in row.inner_text() and "nobody" in row.inner_text()
        row.locator("button", has_text="Claim").click()
        rita.wait_for_url("**/cases")
        assert "rita" in rita.locator("tr", has_text="CASE-c-case").inner_text()
        rita.screenshot(path=str(SHOTS / "review-cases.png"), full_page=True)
        rob = browser.new_page(viewport={"width": 1100, "height": 800})
        _login(rob, base, "rob")
        rob.goto(base + "/cases")
        theirs = rob.locator("tr", has_text="CASE-c-case")
        assert "rita" in theirs.inner_text() and theirs.locator("button", has_text="Claim").count() == 0
        rita.goto(base + "/conversations/c-case")
        rita.select_option("#outcome-form select[name=outcome]", "contacted")
        rita.click("#outcome-form button[type=submit]")
        rita.wait_for_url("**/conversations/c-case")
        rita.goto(base + "/cases")
        assert "No open urgent cases" in rita.content()
        browser.close()
    closed = cases.get("c-case")
    assert closed.state == "closed" and closed.closed_by == "rita" and closed.outcome == "contacted"
