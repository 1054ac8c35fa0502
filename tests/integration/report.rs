//! The report to the leadership over real mTLS: a quarter's data pushed (quotas and people of a
//! city unit and a district unit, ghost pay, a ledger item closed and one overdue, a penalty, a
//! published case), the report asked for as PDF, and the PDF turned into text (pdftotext) and PNG
//! pages (pdftoppm) by poppler: the tables' Chinese headings and the figures pushed are in the
//! text, the charts' bars are on the pages. HTML and the refusals of other kinds too.
//!
//! Needs poppler-utils (.ci/run installs it); without it the PDF half says so and passes, except
//! in CI.

use std::path::Path;
use std::process::Command;

use chrono::NaiveDate;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::ledger::{close, ledger, open_by_hand};
use crate::on_both_backends;

on_both_backends!(the_quarter_report_renders_its_figures_tables_and_charts_to_pdf_and_html);

type Reports = proto::report_service_client::ReportServiceClient<Channel>;

/// The colours the PDF draws the bars in (report::pdf): approved quota, people, over quota,
/// findings raised.
const APPROVED: [u8; 3] = [74, 116, 181];
const ACTIVE: [u8; 3] = [143, 180, 90];
const SHORT: [u8; 3] = [192, 57, 43];
const RAISED: [u8; 3] = [217, 130, 43];

/// A unit of `division` with an administrative quota of `count` and `hired` people.
async fn unit(app: &TestApp, division: &str, n: u32, count: u32, hired: u32) -> String {
    let unit = uscc(division, n);
    let mut staffing = app.staffing("140100").await;
    let mut institution = organ(&format!("inst-{n}"), &unit, division);
    institution.name = format!("测试局{n}");
    staffing.push_institution(institution).await.unwrap();
    staffing
        .push_quota(quota(&format!("q-{n}"), &unit, count))
        .await
        .unwrap();
    let mut hr = app.hr("140100").await;
    for i in 0..hired {
        hr.push_personnel_event(hire(
            &format!("h-{n}-{i}"),
            &resident(n * 100 + i),
            &unit,
            "2024-01-02",
        ))
        .await
        .unwrap();
    }
    unit
}

async fn the_quarter_report_renders_its_figures_tables_and_charts_to_pdf_and_html(
    backend: Backend,
) {
    // The hub's own clock: findings are stamped with the time they are raised, the ledger with
    // the hub's clock, so the quarter is the one of today (China Standard Time).
    let app = TestApp::spawn(backend).await;
    let today = app.store.checks().clock.today();
    let (from, to) = quarter_of(today);
    let city_unit = unit(&app, "140100", 1, 10, 12).await;
    let district_unit = unit(&app, "140105", 2, 5, 3).await;
    // Two ghost-pay lines at the district unit (PAID_NOT_ON_ROLL).
    let mut finance = app.finance("140100").await;
    for n in 0..2 {
        finance
            .push_payroll_line(payroll(
                &format!("ghost-{n}"),
                &resident(900 + n),
                &district_unit,
                "2024-05",
            ))
            .await
            .unwrap();
    }
    // The city unit's item closed; the district unit's overdue at the quarter's end.
    let item = open_by_hand(&app, &city_unit, &to.to_string()).await;
    let item = close(&app, item).await;
    // Due the day before the quarter's last: overdue at its end.
    let due = to.pred_opt().unwrap();
    open_by_hand(&app, &district_unit, &due.to_string()).await;
    ledger(&app, AgencyKind::StaffingOffice)
        .await
        .impose_penalty(proto::ImposePenaltyRequest {
            item_id: item.id.clone(),
            kind: proto::PenaltyKind::Admonition as i32,
            text: "超编进人，诫勉谈话".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut cases = crate::ledger::cases(&app, AgencyKind::StaffingOffice).await;
    let case = cases
        .take_report(proto::ReportRequest {
            channel: proto::ReportChannel::Hotline as i32,
            institution_uscc: district_unit.clone(),
            text: "有人不上班仍领工资".into(),
            owner: "督查科".into(),
            due_on: to.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    cases
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Closed as i32,
            expected_version: case.version,
            text: "查实，已追回工资".into(),
        })
        .await
        .unwrap();
    cases
        .publish_bulletin(proto::BulletinRequest {
            case_id: case.id.clone(),
            text: "测试局2吃空饷问题查实，已追回".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A special inspection of ghost pay over both units, no declaration yet.
    proto::campaign_service_client::CampaignServiceClient::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    )
    .open_campaign(proto::OpenCampaignRequest {
        title: "吃空饷专项检查".into(),
        codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
        period_from: "2024-05".into(),
        period_to: "2024-05".into(),
        deadline: to.to_string(),
        ..Default::default()
    })
    .await
    .unwrap();

    let request = |format: proto::ReportFormat| proto::LeadershipReportRequest {
        jurisdiction: "140100".into(),
        from: from.to_string(),
        to: to.to_string(),
        format: format as i32,
        language: String::new(),
    };
    // Departments do not read it; discipline does.
    for (kind, allowed) in [(AgencyKind::Hr, false), (AgencyKind::Discipline, true)] {
        let answer = Reports::new(app.channel(&agency("140100", kind)).await)
            .leadership_report(request(proto::ReportFormat::Unspecified))
            .await;
        match answer {
            Ok(_) => assert!(allowed, "{kind}"),
            Err(status) => {
                assert!(!allowed, "{kind}: {status:?}");
                assert_eq!(status.code(), Code::PermissionDenied);
            }
        }
    }
    let mut reports = Reports::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    );
    let report = reports
        .leadership_report(request(proto::ReportFormat::Pdf))
        .await
        .unwrap()
        .into_inner();

    // The figures.
    let balance: Vec<(String, i64, i64, i64)> = report
        .balance
        .iter()
        .map(|row| {
            (
                row.jurisdiction.clone(),
                row.approved,
                row.active,
                row.surplus,
            )
        })
        .collect();
    assert_eq!(
        balance,
        [
            ("140100".to_owned(), 10, 12, -2),
            ("140105".to_owned(), 5, 3, 2)
        ]
    );
    let ghost = report
        .findings
        .iter()
        .find(|row| row.code == proto::RuleCode::PaidNotOnRoll as i32)
        .unwrap_or_else(|| panic!("ghost pay in the report: {:?}", report.findings));
    assert_eq!((ghost.raised, ghost.closed, ghost.open_at_end), (2, 0, 2));
    assert!(
        report
            .findings
            .iter()
            .any(|row| row.code == proto::RuleCode::OverQuota as i32 && row.raised == 1)
    );
    let departments: Vec<(String, u64, u64, u64, u32)> = report
        .departments
        .iter()
        .map(|row| {
            (
                row.department_name.clone(),
                row.handled,
                row.closed,
                row.overdue,
                row.closure_permille,
            )
        })
        .collect();
    assert_eq!(
        departments,
        [
            ("测试局1".to_owned(), 1, 1, 0, 1000),
            ("测试局2".to_owned(), 1, 0, 1, 0)
        ]
    );
    assert_eq!((report.closure_permille, report.overdue), (500, 1));
    assert_eq!(report.penalties.len(), 1);
    assert_eq!(report.penalties[0].institution_name, "测试局1");
    assert_eq!(report.bulletins.len(), 1);
    assert!(report.campaigns_kept);
    let campaigns: Vec<(String, u64, u64, u64, u64)> = report
        .campaigns
        .iter()
        .map(|row| {
            (
                row.title.clone(),
                row.institutions,
                row.declared,
                row.missing,
                row.undeclared_items,
            )
        })
        .collect();
    assert_eq!(campaigns, [("吃空饷专项检查".to_owned(), 2, 0, 2, 0)]);
    assert_eq!(report.media_type, "application/pdf");
    assert!(report.document.starts_with(b"%PDF-"));

    // The HTML: the same sections, the charts as inline SVG.
    let html = reports
        .leadership_report(request(proto::ReportFormat::Html))
        .await
        .unwrap()
        .into_inner();
    assert!(html.media_type.starts_with("text/html"));
    let page = String::from_utf8(html.document).unwrap();
    for text in [
        "编制总量余缺",
        "<svg",
        "吃空饷",
        "测试局2",
        "吃空饷专项检查",
        "诫勉谈话",
        "50.0%",
    ] {
        assert!(page.contains(text), "the HTML lacks {text}");
    }
    // A quarter with nothing in it is reported as such.
    let empty = reports
        .leadership_report(proto::LeadershipReportRequest {
            from: "2023-01-01".into(),
            to: "2023-03-31".into(),
            ..request(proto::ReportFormat::Unspecified)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.findings.is_empty() && empty.departments.is_empty());
    let refused = reports
        .leadership_report(proto::LeadershipReportRequest {
            from: to.succ_opt().unwrap().to_string(),
            ..request(proto::ReportFormat::Unspecified)
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    check_pdf(&report.document);

    // `quotahub report` writes the same PDF, figures and all.
    let files = ClientFiles::new(&agency("140100", AgencyKind::StaffingOffice));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.pdf");
    let cli = <quotahub::cli::Cli as clap::Parser>::parse_from([
        "quotahub",
        "report",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--server",
        &app.endpoint(),
        "--ca",
        &files.ca,
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--out",
        out.to_str().unwrap(),
    ]);
    quotahub::cli::run(cli).await.unwrap();
    let written = std::fs::read(&out).unwrap();
    assert!(written.starts_with(b"%PDF-"));
    check_pdf(&written);
}

/// The first and last days of the quarter holding `day`.
fn quarter_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    use chrono::Datelike;
    let first_month = (day.month0() / 3) * 3 + 1;
    let from = NaiveDate::from_ymd_opt(day.year(), first_month, 1).unwrap();
    let next = if first_month == 10 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), first_month + 3, 1)
    }
    .unwrap();
    (from, next.pred_opt().unwrap())
}

/// Whether poppler is here; in CI its absence fails the test.
fn poppler() -> bool {
    let found = Command::new("pdftoppm").arg("-v").output().is_ok()
        && Command::new("pdftotext").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pdftoppm and pdftotext are needed in CI (apt-get install poppler-utils)"
        );
        eprintln!("report PDF not checked: no pdftoppm/pdftotext (apt-get install poppler-utils)");
    }
    found
}

fn check_pdf(pdf: &[u8]) {
    if !poppler() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).unwrap();

    // The tables' text, as a reader would copy it out.
    let output = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&file)
        .arg("-")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    for heading in [
        "机构编制管理情况报告",
        "一、编制总量余缺",
        "二、问题发现与消除",
        "三、整改台账销号率",
        "四、专项检查及结果",
        "吃空饷专项检查",
        "进行中",
        "五、处罚情况",
        "六、公开通报",
        "核定编制",
        "实有人数",
        "吃空饷",
        "超编",
        "测试局1",
        "测试局2",
        "诫勉谈话",
        "50.0%",
        "100.0%",
    ] {
        assert!(
            text.contains(heading),
            "the PDF's text lacks {heading}:\n{text}"
        );
    }
    // The balance table's rows: division, category, approved, on the roll, surplus.
    let squeezed: Vec<String> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in ["140100 行政编制 10 12 -2", "140105 行政编制 5 3 2"] {
        assert!(
            squeezed.iter().any(|line| line == row),
            "no line `{row}` in:\n{text}"
        );
    }
    // The campaign's line: in scope, declared, late, missing, undeclared items.
    assert!(
        squeezed
            .iter()
            .any(|line| line.starts_with("吃空饷专项检查") && line.ends_with("进行中 2 0 0 2 0")),
        "no campaign line in:\n{text}"
    );

    // The pages as pictures: the charts' bars are there.
    let status = Command::new("pdftoppm")
        .args(["-r", "72", "-png"])
        .arg(&file)
        .arg(dir.path().join("page"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "png"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    let first = Picture::read(&pages[0]);
    // Bars of a colour cover a region, not a stray pixel.
    for (name, colour) in [
        ("approved", APPROVED),
        ("people", ACTIVE),
        ("over quota", SHORT),
    ] {
        let region = first.region(colour);
        assert!(
            region.pixels > 200 && region.width() > 20 && region.height() > 4,
            "the balance chart's {name} bars on page 1: {region:?}"
        );
    }
    // The page is not blank outside the charts either: text covers a good share of it.
    assert!(first.inked() > first.width * first.height / 100);
    let raised = pages
        .iter()
        .map(|page| Picture::read(page).region(RAISED))
        .max_by_key(|region| region.pixels)
        .unwrap();
    assert!(
        raised.pixels > 200 && raised.width() > 20,
        "the findings chart's bars: {raised:?}"
    );
}

/// A decoded PNG page, RGB.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// Where pixels of one colour lie on a page.
#[derive(Debug, Default)]
struct Region {
    pixels: usize,
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
}

impl Region {
    fn width(&self) -> usize {
        (self.right + 1).saturating_sub(self.left)
    }

    fn height(&self) -> usize {
        (self.bottom + 1).saturating_sub(self.top)
    }
}

impl Picture {
    fn read(path: &Path) -> Picture {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buffer).unwrap();
        let channels = info.color_type.samples();
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let rgb = buffer[..info.buffer_size()]
            .chunks(channels)
            .flat_map(|pixel| {
                if channels >= 3 {
                    [pixel[0], pixel[1], pixel[2]]
                } else {
                    [pixel[0]; 3]
                }
            })
            .collect();
        Picture {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let at = (y * self.width + x) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }

    /// The pixels within a small distance of `colour` (anti-aliasing aside).
    fn region(&self, colour: [u8; 3]) -> Region {
        let mut region = Region {
            left: usize::MAX,
            top: usize::MAX,
            ..Region::default()
        };
        for y in 0..self.height {
            for x in 0..self.width {
                let pixel = self.pixel(x, y);
                let close = pixel.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 6);
                if close {
                    region.pixels += 1;
                    region.left = region.left.min(x);
                    region.top = region.top.min(y);
                    region.right = region.right.max(x);
                    region.bottom = region.bottom.max(y);
                }
            }
        }
        region
    }

    /// Pixels that are not white.
    fn inked(&self) -> usize {
        self.rgb
            .chunks(3)
            .filter(|pixel| pixel.iter().any(|c| *c < 200))
            .count()
    }
}
