"""End-to-end: the running dashboard driven in real headless Chromium (Playwright).

The data dir was written through the product's write path with an injected exfiltration chain
(see storegen.py); the detectors raised TT-EXFIL-001 on it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.dashboard.conftest import PASSWORD, USER, login, screenshot
from tests.dashboard.storegen import EXFIL_SESSION

pytestmark = pytest.mark.slow


def _no_csp_violations(pg) -> None:
    bad = [m for m in pg.tt_console if "Content Security Policy" in m or m.startswith("pageerror")]
    assert not bad, bad


def test_pages_without_session_redirect_to_login(page, dash_server):
    base = dash_server["url"]
    for path in ("/", "/alerts", "/timeline?session=x", "/integrity", "/query"):
        page.goto(base + path)
        page.wait_for_selector("#login-submit")
        assert "/login" in page.url
        assert "next=" in page.url
    screenshot(page, "login")


def test_wrong_password_is_refused(page, dash_server):
    base = dash_server["url"]
    login(page, base, USER, "not-the-password")
    page.wait_for_selector("#login-error")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    assert "/login" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "tooltrail_session"]
    login(page, base, "nobody", PASSWORD)
    page.wait_for_selector("#login-error")
    page.goto(base + "/alerts")
    page.wait_for_selector("#login-submit")


def test_analyst_investigates_the_exfiltration_alert(page, dash_server):
    base = dash_server["url"]
    built = dash_server["built"]
    assert built.exfil_alert_id, "the detectors raised no TT-EXFIL-001 alert on the generated traffic"

    # Sign in; the overview shows the traffic.
    login(page, base)
    page.wait_for_selector("#page-overview")
    # (predicates as functions: the dashboard's CSP forbids eval, which string expressions need)
    page.wait_for_function("() => { const e = document.querySelector('#kpi-events .tt-kpi-value'); "
                           "return e && e.innerText !== '-'; }")
    time.sleep(0.8)  # let plotly finish drawing before the screenshot
    from tooltrail.query import ReadOnlyQuery

    last_day = ReadOnlyQuery(dash_server["config"]).scalar("select count(*) from events where ts >= now() - interval 1 day")
    shown = int(page.inner_text("#kpi-events .tt-kpi-value").replace(",", ""))
    assert shown > 100 and abs(shown - last_day) <= 5  # the range moved by the time the count ran
    # the graphs come drawn with the page's data, by the partial plotly.js bundle (the traces the pages use)
    for graph in ("ov-events", "ov-alerts", "ov-volume"):
        page.wait_for_selector(f"#{graph} g.trace", state="attached")
    assert page.evaluate("() => Object.keys(window.Plotly.PlotSchema.get().traces).sort()") == ["bar", "pie", "scatter"]
    screenshot(page, "overview")

    # Alerts: the injected exfiltration alert is listed; open it.
    page.click("#nav-alerts")
    page.wait_for_selector("#page-alerts")
    row = page.locator("#al-table td", has_text="Exfiltration chain").first
    row.wait_for()
    screenshot(page, "alerts")
    row.click()
    page.wait_for_selector("#al-detail-title")
    assert "Exfiltration chain" in page.inner_text("#al-detail-title")
    assert page.locator("tr.tt-evidence-row").count() == 2
    detail = page.inner_text("#al-detail")
    assert "Runbook".upper() in detail.upper() and EXFIL_SESSION in detail
    page.wait_for_selector(".offcanvas.show:not(.showing)")
    page.wait_for_timeout(400)  # the panel's slide-in transition
    screenshot(page, "alert-detail", full_page=False)

    # Jump to the timeline: the chain's two events are highlighted.
    page.click("#al-timeline-link")
    page.wait_for_selector("#page-timeline")
    page.wait_for_selector("#tl-highlight-count[data-focus='2']")
    matched = page.locator("#tl-table td[data-dash-column='match']", has_text="TT-EXFIL-001")
    assert matched.count() == 2
    tools = [t.strip() for t in page.locator("#tl-table td[data-dash-column='lane']").all_inner_texts()]
    assert "gmail/read_email" in tools and "gmail/send_email" in tools
    assert page.input_value("#tl-session") == EXFIL_SESSION

    # Click an event: full record, chain position and a verified inclusion proof.
    page.locator("#tl-table td[data-dash-column='lane']", has_text="gmail/send_email").first.click()
    page.wait_for_selector("#tl-record")
    assert "drop@evil-mail.net" in page.inner_text("#tl-record")
    page.wait_for_selector("#tl-proof-ok", timeout=30_000)
    assert re.search(r"local #\d+", page.inner_text("#tl-chain-pos"))
    time.sleep(0.5)
    screenshot(page, "timeline")

    # Export the view as an evidence bundle.
    with page.expect_download() as dl:
        page.click("#tl-export")
    path = dl.value.path()
    import json

    from ingest.proofs import verify_bundle

    bundle = json.loads(Path(path).read_text())
    assert verify_bundle(bundle).ok and len(bundle["events"]) == 3  # the whole session

    # Back to the alert; acknowledge it with a note. Who and when are recorded.
    page.goto(base + f"/alerts?id={built.exfil_alert_id}")
    page.wait_for_selector("#al-detail-title")
    page.fill("#al-note", "Confirmed with the data owner; token revoked (INC-1042).")
    page.click("#al-ack")
    page.wait_for_selector("#al-action-ok")
    page.wait_for_function("() => { const h = document.querySelector('.tt-history'); "
                           "return h && h.innerText.includes('acknowledged'); }")
    history = page.inner_text(".tt-history")
    assert f"by {USER}" in history and "INC-1042" in history
    from tooltrail.query import ReadOnlyQuery

    row = ReadOnlyQuery(dash_server["config"]).rows("select status, updated_by, note from alerts where alert_id = ?",
                                                    [built.exfil_alert_id])[0]
    assert row["status"] == "acknowledged" and row["updated_by"] == USER and "INC-1042" in row["note"]

    # Query: run a saved query with a parameter.
    page.keyboard.press("Escape")  # close the alert panel
    page.wait_for_selector(".offcanvas-backdrop", state="detached")
    page.click("#nav-query")
    page.wait_for_selector("#page-query")
    page.get_by_text("Events of one session").click()
    param = page.locator("input[id*='q-param'][id*='session']")
    param.wait_for()
    param.fill(EXFIL_SESSION)
    page.click("#q-run")
    page.wait_for_selector("#q-rowcount")
    assert page.inner_text("#q-rowcount").startswith("3 rows")
    assert page.locator("#q-table td", has_text="send_email").count() == 1
    with page.expect_download() as dl:
        page.click("#q-csv")
    csv_text = Path(dl.value.path()).read_text()
    assert csv_text.count("\n") == 4 and "read_email" in csv_text
    screenshot(page, "query")

    # Integrity: run verification with progress, see the result.
    page.click("#nav-integrity")
    page.wait_for_selector("#page-integrity")
    page.click("#in-run")
    page.wait_for_function("() => { const v = document.querySelector('#in-verify'); "
                           f"return v && v.innerText.includes('Intact') && v.innerText.includes('by {USER}'); }}",
                           timeout=60_000)
    page.wait_for_selector("#in-chain-table")
    assert "valid" in page.inner_text("#in-chain-table")
    time.sleep(0.5)
    screenshot(page, "integrity")
    _no_csp_violations(page)


def test_session_expiry_sends_the_browser_to_login(page, dash_server):
    base = dash_server["url"]
    auth = dash_server["app"].tooltrail_auth
    login(page, base, path="/query")
    page.wait_for_selector("#page-query")
    old = auth.sessions.idle_s
    auth.sessions.idle_s = 0.5
    try:
        time.sleep(1.0)
        page.click("#nav-alerts")  # client-side navigation: the page callback now gets a 401
        page.wait_for_selector("#login-submit")
        assert "expired=1" in page.url
        assert "session ended" in page.inner_text("body")
    finally:
        auth.sessions.idle_s = old


def test_sign_out_ends_the_session(page, dash_server):
    base = dash_server["url"]
    login(page, base)
    page.wait_for_selector("#page-overview")
    cookie = next(c for c in page.context.cookies() if c["name"] == "tooltrail_session")
    page.click("#tt-logout")
    page.wait_for_selector("#login-submit")
    page.context.add_cookies([cookie])  # replaying the old cookie does not help
    page.goto(base + "/alerts")
    page.wait_for_selector("#login-submit")
