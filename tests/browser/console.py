"""The supervision console in headless Chromium (Debian's), driven by Playwright.

Run by tests/integration/console.rs against a hub it started, with the agencies' certificates in
--certs (`{kind}.pem`, `{kind}-key.pem`; `unregistered.pem` is a certificate the hub's CA issued but
the registry does not know). Each agency's browser presents its certificate during the TLS
handshake, as a USB-key certificate would. Prints `RESULT {json}` for the Rust side to check
against gRPC, and writes a screenshot of every page to --screenshots.

Every wait is on a condition (a navigation's load, an element); nothing sleeps.
"""

import argparse
import json
import os
import shutil
import sys
from urllib.parse import urlencode, urlparse

from playwright.sync_api import sync_playwright

args = argparse.ArgumentParser()
args.add_argument("--url", required=True)
args.add_argument("--certs", required=True)
args.add_argument("--screenshots", required=True)
args.add_argument("--resident", required=True, help="the ghost's resident ID, whole")
args.add_argument("--masked", required=True, help="the same ID as masked readers see it")
args.add_argument("--institution", required=True)
opts = args.parse_args()
os.makedirs(opts.screenshots, exist_ok=True)

ORIGIN = opts.url.rstrip("/")
TIMEOUT_MS = 30_000
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}", flush=True)


def shot(page, name):
    path = os.path.join(opts.screenshots, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot {path}", flush=True)


class Browser:
    """One agency's browser: its context presents the agency's certificate (or none), and every
    request the pages make and every console message are recorded."""

    def __init__(self, chromium, kind):
        certificates = []
        if kind is not None:
            certificates = [{
                "origin": ORIGIN,
                "certPath": os.path.join(opts.certs, f"{kind}.pem"),
                "keyPath": os.path.join(opts.certs, f"{kind}-key.pem"),
            }]
        # The hub's development CA is not in the browser's trust store; the server certificate
        # is still the hub's (the handshake and the client certificate are real).
        self.context = chromium.new_context(
            ignore_https_errors=True,
            client_certificates=certificates,
            locale="zh-CN",
            viewport={"width": 1280, "height": 900},
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.kind = kind
        self.requests = []
        self.errors = []
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", self.on_console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def on_console(self, message):
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def goto(self, path, status=200):
        response = self.page.goto(ORIGIN + path, wait_until="load")
        check(response is not None and response.status == status,
              f"{self.kind}: {path} answered {response.status if response else None}, not {status}")
        return response

    def finish(self, expect_errors=False):
        outside = [url for url in self.requests if not url.startswith(ORIGIN + "/")]
        check(not outside, f"{self.kind}: requests left the hub's origin: {outside}")
        if not expect_errors:
            check(not self.errors, f"{self.kind}: console errors: {self.errors}")
        self.context.close()


def finding_path(subject, lang=None):
    query = {"code": "PAID_NOT_ON_ROLL", "institution": opts.institution, "subject": subject,
             "period": "2024-01"}
    if lang:
        query["lang"] = lang
    return "/finding?" + urlencode(query)


result = {}
with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                          args=["--no-sandbox"])

    # Discipline inspection: the overview, in both languages; the list; the finding whole; and
    # an acknowledgement made in the page.
    discipline = Browser(chromium, "discipline")
    page = discipline.page
    discipline.goto("/")
    check(page.locator("#balance-chart title").first.text_content() == "编制总量余缺",
          "the overview's chart has its Chinese title")
    check(page.locator("#balance-table tbody tr").count() >= 1, "the overview has balance rows")
    check(page.locator("#open-table").inner_text().find("吃空饷") >= 0,
          "the overview counts the open 吃空饷 finding")
    check(page.locator("#viewer").inner_text() == "140100 纪检监察", "the viewer is named")
    shot(page, "overview-zh")
    page.click("a.lang")
    page.wait_for_url("**/?lang=en")
    check(page.locator("h1").first.inner_text().startswith("Overview"), "the English overview")
    check("Quota against people" in page.locator("#balance-chart title").first.text_content(),
          "the English chart title")
    shot(page, "overview-en")
    page.click("nav a[href='/findings?lang=en']")
    page.wait_for_selector("#findings-table")
    check(page.locator("html").get_attribute("lang") == "en", "the list stays in English")
    discipline.goto("/findings?rule=PAID_NOT_ON_ROLL")
    rows = page.locator("#findings-table tbody tr")
    check(rows.count() == 1, f"one 吃空饷 finding listed, not {rows.count()}")
    check(opts.resident in rows.first.inner_text(), "discipline sees the resident ID whole")
    shot(page, "findings-discipline")
    with page.expect_download() as download:
        page.click("#csv")
    csv_text = open(download.value.path(), encoding="utf-8-sig").read()
    check(csv_text.startswith("rule,rule_name"), "the CSV export has its header")
    check(opts.resident in csv_text and "PAID_NOT_ON_ROLL" in csv_text,
          "the CSV export holds the filtered finding")
    rows.first.locator("a").first.click()
    page.wait_for_selector("#explanation")
    check(opts.resident in page.locator("#subject").inner_text(), "discipline: subject whole")
    check(opts.resident in page.locator("#explanation").inner_text(),
          "discipline: explanation whole")
    check(page.locator("#evidence tbody tr").count() >= 1, "the finding's evidence is listed")
    check(page.locator("#alert-state").inner_text() == "待处理", "the alert is open")
    version_before = int(page.locator("#version").inner_text())
    shot(page, "finding-discipline")
    page.fill("#transition input[name=note]", "已电话核实")
    page.click("#transition button[value=ACKNOWLEDGED]")
    page.wait_for_function(
        "document.querySelector('#alert-state') && "
        "document.querySelector('#alert-state').innerText === '已签收'")
    version_after = int(page.locator("#version").inner_text())
    check(version_after > version_before, "the transition moved the version on")
    check(page.locator("#transition button[value=ACKNOWLEDGED]").count() == 0,
          "an acknowledged alert offers no acknowledgement")
    shot(page, "finding-acknowledged")
    # The form as it was before (its version no longer stored) is refused: a conflict page.
    token = page.locator("meta[name=form-token]").get_attribute("content")
    stale = discipline.context.request.post(
        ORIGIN + "/finding/transition",
        form={"code": "PAID_NOT_ON_ROLL", "institution": opts.institution,
              "subject": opts.resident, "period": "2024-01", "version": str(version_before),
              "to": "RECTIFYING", "form_token": token},
        headers={"Origin": ORIGIN}, max_redirects=0)
    check(stale.status == 409 and "ABORTED" in stale.text(), "a stale form is refused (409)")
    discipline.finish()
    result["version_after"] = version_after

    # Finance: the same finding, the resident ID masked everywhere.
    finance = Browser(chromium, "finance")
    page = finance.page
    finance.goto("/findings?rule=PAID_NOT_ON_ROLL")
    rows = page.locator("#findings-table tbody tr")
    check(rows.count() == 1, "finance lists the finding")
    check(opts.resident not in page.content(), "finance's list never shows the whole ID")
    shot(page, "findings-finance")
    rows.first.locator("a").first.click()
    page.wait_for_selector("#explanation")
    content = page.content()
    check(opts.resident not in content, "finance's finding page never shows the whole ID")
    check(opts.masked in page.locator("#explanation").inner_text(),
          "finance sees the masked ID in the explanation")
    check(page.locator("#masked-note").count() == 1, "finance is told data is masked")
    check(page.locator("#transition").count() == 0, "finance has no transition form")
    shot(page, "finding-finance")
    finance.finish()

    # HR: no transition form; a forged POST with a good token and origin is refused by policy,
    # and one without the token by the form check.
    hr = Browser(chromium, "hr")
    page = hr.page
    hr.goto(finding_path(opts.resident))
    check(page.locator("#transition").count() == 0, "HR has no transition form")
    check(page.locator("#no-transition").count() == 1, "HR is told it may not move alerts")
    shot(page, "finding-hr")
    token = page.locator("meta[name=form-token]").get_attribute("content")
    form = {"code": "PAID_NOT_ON_ROLL", "institution": opts.institution,
            "subject": opts.resident, "period": "2024-01", "version": str(version_after),
            "to": "CLOSED", "form_token": token}
    forged = hr.context.request.post(ORIGIN + "/finding/transition", form=form,
                                     headers={"Origin": ORIGIN}, max_redirects=0)
    check(forged.status == 403, f"HR's forged POST is refused, not {forged.status}")
    check("拒绝访问" in forged.text() and "贵单位无权" in forged.text(),
          "HR's forged POST gets the refusal page of an agency that may not")
    no_token = hr.context.request.post(ORIGIN + "/finding/transition",
                                       form={**form, "form_token": "00"},
                                       headers={"Origin": ORIGIN}, max_redirects=0)
    check(no_token.status == 403, "a POST without the certificate's token is refused")
    cross_site = hr.context.request.post(ORIGIN + "/finding/transition", form=form,
                                         headers={"Origin": "https://evil.example"},
                                         max_redirects=0)
    check(cross_site.status == 403, "a POST from another origin is refused")
    hr.finish()

    # The staffing office: the overview and the list (screenshots for the README).
    office = Browser(chromium, "staffing-office")
    office.goto("/")
    shot(office.page, "overview-staffing-office")
    office.finish()

    # A browser with no certificate, and one with a certificate the registry does not know: the
    # refusal page in both languages. The 403 of the page itself is logged by Chromium.
    for kind, name in [(None, "refused-no-certificate"), ("unregistered", "refused-unregistered")]:
        stranger = Browser(chromium, kind)
        stranger.goto("/", status=403)
        check(stranger.page.locator("#refused").inner_text() == "拒绝访问",
              f"{name}: the refusal page")
        check("Access refused" in stranger.page.content(), f"{name}: in English too")
        check("数字证书" in stranger.page.content(), f"{name}: the page says a certificate is the login")
        shot(stranger.page, name)
        stranger.errors = [e for e in stranger.errors if "403" not in e]
        stranger.finish()

    chromium.close()

print("RESULT " + json.dumps(result), flush=True)
if failures:
    print(f"{len(failures)} check(s) failed", flush=True)
    sys.exit(1)
