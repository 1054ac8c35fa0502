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
args.add_argument("--newcomer", required=True,
                  help="the resident ID of a ghost the hub side pushes while the live page is open")
args.add_argument("--item", required=True, help="a ledger item's id")
args.add_argument("--case", required=True, help="a case's id")
args.add_argument("--transfer", required=True,
                  help="a joint inspection of the item, reaching audit and finance, naming --resident")
args.add_argument("--application", required=True,
                  help="an application the staffing office let past the gate of the overdue item")
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
    check(page.locator("#trend-chart circle").count() == 12, "the trend has twelve weeks")
    check(page.locator("#severity-chart rect").count() == 5, "the severity mix")
    check(page.locator("#overdue-table").inner_text().find(opts.institution) >= 0,
          "the overdue ledger item counts for its department")
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
    check(page.locator("#ladder li").count() == 4 and
          page.locator("#ladder li[aria-current=step]").inner_text().startswith("0"),
          "the escalation ladder, at its first step")
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

    # The live page: the feed's events as they come, over server-sent events from the hub's own
    # origin. The earlier finding is there (a new subscription starts a day back); then the hub
    # side pushes a payroll line over gRPC and the new finding must appear within 2 s.
    discipline.goto("/live")
    page.wait_for_selector("#live-status[data-state=connected]")
    page.wait_for_selector(f"#live-events tr:has-text('{opts.resident}')")
    print("READY live", flush=True)
    check(sys.stdin.readline().strip() == "PUSHED", "the hub side pushed")
    try:
        row = page.wait_for_selector(f"#live-events tr:has-text('{opts.newcomer}')", timeout=2_000)
        live_seq = int(row.get_attribute("data-seq"))
        check("吃空饷" in row.inner_text(), "the live row names the rule in Chinese")
        check(row.query_selector("a[href^='/finding?']") is not None, "the live row links the finding")
    except Exception as error:  # a timeout: the push did not show within 2 s
        check(False, f"the push made over gRPC did not appear on the live page within 2 s: {error}")
        live_seq = 0
    shot(page, "live-discipline")
    # Resuming: a stream opened with the id before that event (as EventSource reconnects) starts
    # with that event.
    resumed = page.evaluate("""async (after) => {
        const controller = new AbortController();
        const response = await fetch('/live/events', {headers: {'Last-Event-ID': String(after)},
                                                      signal: controller.signal});
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let text = '';
        for (;;) {
            const {value, done} = await reader.read();
            if (done) return null;
            text += decoder.decode(value, {stream: true});
            const match = text.match(/^id: ?(\\d+)$/m);
            if (match) { controller.abort(); return Number(match[1]); }
        }
    }""", live_seq - 1)
    check(resumed == live_seq, f"a stream resumed after {live_seq - 1} starts at {live_seq}, not {resumed}")

    # The institution's page, whole for discipline.
    institution_path = "/institution?" + urlencode({"uscc": opts.institution, "period": "2024-01"})
    discipline.goto(institution_path)
    check(page.locator("#quotas-table tbody tr").count() >= 1, "the institution's quotas")
    check(opts.resident in page.locator("#payroll-table").inner_text(),
          "discipline sees the payroll's resident IDs whole")
    check(page.locator("#institution-findings tbody tr").count() >= 2,
          "the institution's open findings")
    check("年度核查发现的问题" in page.locator("#institution-items").inner_text(),
          "the institution's ledger items")
    check(page.locator("#roll-table tbody tr").count() == 1, "one person on the roll")
    shot(page, "institution-discipline")
    discipline.goto("/institution")
    check(opts.institution in page.locator("#institutions-table").inner_text(),
          "the index lists institutions with open findings")
    shot(page, "institutions")
    check(page.locator("nav a[href='/audit']").count() == 1, "discipline may open the audit trail")
    # The findings list sorted by a column, and filtered by division and by the days raised.
    discipline.goto("/findings?sort=severity")
    check(page.locator("#findings-table th[aria-sort=ascending]").count() == 1,
          "the list says which column it is sorted by")
    check(page.locator("#findings-table tbody tr").count() >= 2, "sorted, every open finding")
    page.click("#findings-table thead a:has-text('级别')")
    page.wait_for_selector("#findings-table th[aria-sort=descending]")
    check("sort=-severity" in page.url, "the order is in the link")
    shot(page, "findings-sorted")
    discipline.goto("/findings?division=140105")
    check(page.locator("#findings-table").count() == 0, "none in another division")
    discipline.goto("/findings?from=2099-01-01")
    check(page.locator("#findings-table").count() == 0, "none raised in the future")
    discipline.goto("/findings?to=2099-01-01&rule=PAID_NOT_ON_ROLL")
    check(page.locator("#findings-table tbody tr").count() == 2, "both raised before then")
    discipline.finish()
    result["version_after"] = version_after
    result["live_seq"] = live_seq

    # Finance: the same finding, the resident ID masked everywhere.
    finance = Browser(chromium, "finance")
    page = finance.page
    finance.goto("/findings?rule=PAID_NOT_ON_ROLL")
    rows = page.locator("#findings-table tbody tr")
    # Two ghosts by now: the one pushed while the live page was open too.
    check(rows.count() == 2, f"finance lists both findings, not {rows.count()}")
    check(opts.resident not in page.content() and opts.newcomer not in page.content(),
          "finance's list never shows the whole ID")
    shot(page, "findings-finance")
    links = [rows.nth(i).locator("a").first.get_attribute("href") for i in range(rows.count())]
    for link in links:
        finance.goto(link)
        if opts.masked in page.locator("#explanation").inner_text():
            break
    content = page.content()
    check(opts.resident not in content, "finance's finding page never shows the whole ID")
    check(opts.masked in page.locator("#explanation").inner_text(),
          "finance sees the masked ID in the explanation")
    check(page.locator("#masked-note").count() == 1, "finance is told data is masked")
    check(page.locator("#transition").count() == 0, "finance has no transition form")
    shot(page, "finding-finance")
    finance.goto("/institution?" + urlencode({"uscc": opts.institution, "period": "2024-01"}))
    content = page.content()
    check(opts.resident not in content and opts.newcomer not in content,
          "finance's institution page never shows a whole resident ID")
    check(opts.masked in page.locator("#payroll-table").inner_text(),
          "finance sees masked IDs on the payroll")
    check(page.locator("#masked-note").count() == 1, "finance is told data is masked")
    check(page.locator("#institution-applications").count() == 0,
          "finance, which may not read applications, is not shown them")
    shot(page, "institution-finance")
    # The joint inspection reaches finance: listed, its note masked.
    finance.goto("/transfers")
    check(page.locator("#transfers-table tbody tr").count() == 1, "finance sees the joint inspection")
    check(opts.resident not in page.content(), "finance's transfers never show a whole ID")
    shot(page, "transfers-finance")
    finance.goto("/transfer?" + urlencode({"id": opts.transfer}))
    check(opts.masked in page.locator("#matter-facts").inner_text(),
          "finance reads the covering note masked")
    finance.goto("/live")
    page.wait_for_selector("#live-status[data-state=connected]")
    page.wait_for_selector(f"#live-events tr:has-text('{opts.masked}')")
    check(opts.resident not in page.content(), "finance's live page shows masked IDs only")
    shot(page, "live-finance")
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
    check(page.locator("nav a[href='/audit']").count() == 0, "HR is not offered the audit trail")
    hr.goto("/audit", status=403)
    check("贵单位无权" in page.content(), "HR is refused the audit trail")
    hr.goto("/cases", status=403)
    check("贵单位无权" in page.content(), "HR is refused the cases")
    hr.goto("/applications")
    check(page.locator("#applications-table tbody tr").count() == 1, "HR reads the applications")
    check([t.inner_text() for t in page.locator("nav.tabs a").all()] == ["编制事项申请"],
          "HR is offered only the list it may read")
    hr.errors = [e for e in hr.errors if "403" not in e]
    hr.finish()

    # The staffing office: the overview and the list (screenshots for the README).
    office = Browser(chromium, "staffing-office")
    page = office.page
    office.goto("/")
    shot(page, "overview-staffing-office")
    # The ledger board: the item, overdue, by department; sorted by a column; its timeline.
    office.goto("/ledger")
    items = page.locator("#items-table tbody tr")
    check(items.count() == 1 and "年度核查发现的问题" in items.first.inner_text(), "the board lists the item")
    check(page.locator("#items-table tbody tr.overdue").count() == 1, "the item is marked overdue")
    check(page.locator("#departments-table").inner_text().find(opts.institution) >= 0,
          "the board counts items by department")
    shot(page, "ledger")
    page.click("#items-table thead a:has-text('整改期限')")
    page.wait_for_selector("#items-table th[aria-sort=ascending]")
    page.click("#items-table thead a:has-text('整改期限')")
    page.wait_for_selector("#items-table th[aria-sort=descending]")
    check("sort=-due" in page.url, "the order is in the link")
    with page.expect_download() as download:
        page.click("#csv")
    ledger_csv = open(download.value.path(), encoding="utf-8-sig").read()
    check(opts.item in ledger_csv, "the board's CSV holds the item")
    office.goto("/ledger/item?" + urlencode({"id": opts.item}))
    check(page.locator("#steps li").count() >= 1, "the item's step timeline")
    shot(page, "ledger-item")
    office.goto("/ledger/report?from=2020-01-01")
    check(page.locator("#report-table tbody tr").count() >= 1, "the 定期对账 report has a row")
    shot(page, "ledger-report")
    office.goto("/institution?" + urlencode({"uscc": opts.institution}))
    check("新增职能" in page.locator("#institution-applications").inner_text(),
          "the institution's applications, with the gate's answer")
    check("防汛急需" in page.locator("#institution-applications").inner_text(),
          "the gate's override is shown")
    shot(page, "institution-staffing-office")
    # 督办: cases, transfers and applications, each listed, sortable, exportable, linked.
    office.goto("/matters")
    check(page.url.startswith(ORIGIN + "/cases"), "督办 opens on the cases")
    cases = page.locator("#cases-table tbody tr")
    check(cases.count() == 1 and opts.institution in cases.first.inner_text(), "the case is listed")
    page.click("#cases-table thead a:has-text('办理期限')")
    page.wait_for_selector("#cases-table th[aria-sort=ascending]")
    with page.expect_download() as download:
        page.click("#csv")
    check(opts.case in open(download.value.path(), encoding="utf-8-sig").read(),
          "the cases' CSV holds the case")
    shot(page, "cases")
    cases.first.locator("a").first.click()
    page.wait_for_selector("#matter-facts")
    check(opts.case in page.locator("#matter-heading").inner_text(), "the case's page")
    office.goto("/cases?state=CLOSED")
    check(page.locator("#cases-table").count() == 0, "no closed case")
    office.goto("/transfers")
    transfers = page.locator("#transfers-table tbody tr")
    check(transfers.count() == 1 and "联合督查" in transfers.first.inner_text(),
          "the joint inspection is listed")
    check("待签收" in transfers.first.inner_text(), "its receipts are awaited")
    shot(page, "transfers")
    transfers.first.locator("a").first.click()
    page.wait_for_selector("#steps")
    check(page.locator("#steps li").count() == 2, "a receipt per agency reached")
    check(page.locator("#matter-finding").count() == 1, "the transfer links its matter")
    shot(page, "transfer")
    office.goto("/applications")
    applications = page.locator("#applications-table tbody tr")
    check(applications.count() == 1, "the application is listed")
    text = applications.first.inner_text() if applications.count() else ""
    check("例外受理" in text and "防汛急需" in text, "the gate's answer: let through, and why")
    check(page.locator("#applications-table td.short a").inner_text() == "1",
          "the department's overdue items now, linked to the board")
    with page.expect_download() as download:
        page.click("#csv")
    check(opts.application in open(download.value.path(), encoding="utf-8-sig").read(),
          "the applications' CSV holds the application")
    shot(page, "applications")
    office.goto("/applications?lang=en")
    check(page.locator("h1").first.inner_text().startswith("Staffing applications"),
          "the English list")
    office.goto("/?lang=en")
    check(page.locator("nav a[href='/ledger?lang=en']").count() == 1, "links keep the language")
    office.finish()

    # Audit: the trail with its verification state (checkpoints at every append in this test).
    auditor = Browser(chromium, "audit")
    page = auditor.page
    auditor.goto("/audit")
    check(page.locator("#audit-table tbody tr").count() >= 1, "the trail lists entries")
    check(page.locator("#verify-state").get_attribute("data-state") == "ok",
          "every entry shown checks against the latest checkpoint")
    check(int(page.locator("#verified-count").inner_text()) >= 1, "entries verified by inclusion")
    check(page.locator("#audit-table tr[data-included=bad]").count() == 0, "no entry fails")
    shot(page, "audit")
    auditor.goto("/audit?" + urlencode({"agency": "140100/discipline"}))
    rows = page.locator("#audit-table tbody tr")
    check(rows.count() >= 1 and all("140100/discipline" in rows.nth(i).inner_text()
                                    for i in range(rows.count())),
          "the trail filters by agency")
    auditor.finish()

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
