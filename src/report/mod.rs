//! The report to the leadership (向编委领导报告) as a document: its sections, tables and charts,
//! laid out once ([`Document`]) from the contract's figures and rendered twice, as a
//! self-contained HTML page ([`html`]) and as a PDF the hub makes itself ([`pdf`]). Chinese
//! first. Below the API (which calls it) and beside the console (both draw the geometry of
//! [`crate::chart`]); it imports neither.

pub mod html;
pub mod pdf;

use crate::chart::{self, Chart, CountChart, Lang};
use crate::domain::Coded;
use crate::domain::findings::RuleCode;
use crate::proto;

/// Debian's Noto Sans CJK (package fonts-noto-cjk), the report's font unless `report.font` says
/// otherwise.
pub const DEFAULT_REPORT_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

/// The report, laid out.
pub struct Document {
    /// Its language.
    pub lang: Lang,
    /// The title.
    pub title: String,
    /// The jurisdiction and period, under the title.
    pub subtitle: String,
    /// The headline figures (closure rate, overdue items, …), one line each.
    pub summary: Vec<String>,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

/// One section: a heading, then a chart, a table or a note that there is nothing to show.
pub struct Section {
    /// The anchor (HTML id).
    pub id: &'static str,
    /// The heading.
    pub heading: String,
    /// A chart, if the section has one and something to draw.
    pub figure: Option<Figure>,
    /// The table (empty rows: the note is shown instead).
    pub table: Table,
    /// What is said when the table is empty.
    pub empty_note: String,
}

/// A chart's geometry.
pub enum Figure {
    /// Quota against people (余缺).
    Balance(Chart),
    /// A bar per label.
    Counts(CountChart),
}

/// A table: headings, rows of cells, and which columns are numbers (right-aligned).
pub struct Table {
    /// Column headings.
    pub headers: Vec<String>,
    /// Whether each column holds numbers.
    pub numeric: Vec<bool>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
    /// The relative widths of the columns (for the PDF).
    pub widths: Vec<u32>,
}

/// Chinese or English.
fn t(lang: Lang, zh: &str, en: &str) -> String {
    match lang {
        Lang::Zh => zh.to_owned(),
        Lang::En => en.to_owned(),
    }
}

/// A rule's name in `lang`.
fn rule_name(lang: Lang, code: i32) -> String {
    let name = proto::RuleCode::try_from(code)
        .map(|c| c.as_str_name().trim_start_matches("RULE_CODE_").to_owned())
        .unwrap_or_default();
    match lang {
        Lang::Zh => RuleCode::from_code(&name).map_or(name, |rule| rule.name_zh().to_owned()),
        Lang::En => name.replace('_', " ").to_lowercase(),
    }
}

fn penalty_name(lang: Lang, kind: i32) -> String {
    match proto::PenaltyKind::try_from(kind) {
        Ok(proto::PenaltyKind::CutVacantQuota) => t(lang, "核减空余编制", "vacant quota cut"),
        Ok(proto::PenaltyKind::Admonition) => t(lang, "诫勉/通报批评", "admonition"),
        _ => String::new(),
    }
}

/// A per-mille figure as a percentage with one decimal.
pub fn percent(permille: u32) -> String {
    format!("{}.{}%", permille / 10, permille % 10)
}

fn named(name: &str, uscc: &str) -> String {
    if name.is_empty() {
        uscc.to_owned()
    } else {
        format!("{name} ({uscc})")
    }
}

/// Lays out the report of `figures` in `lang`.
pub fn layout(figures: &proto::LeadershipReportResponse, lang: Lang) -> Document {
    let title = t(
        lang,
        "机构编制管理情况报告（向编委领导报告）",
        "Staffing supervision: report to the leadership",
    );
    let subtitle = match lang {
        Lang::Zh => format!(
            "辖区 {}　报告期 {} 至 {}",
            figures.jurisdiction, figures.from, figures.to
        ),
        Lang::En => format!(
            "Jurisdiction {}, period {} to {}",
            figures.jurisdiction, figures.from, figures.to
        ),
    };
    let raised: u64 = figures.findings.iter().map(|row| row.raised).sum();
    let closed: u64 = figures.findings.iter().map(|row| row.closed).sum();
    let summary = vec![
        match lang {
            Lang::Zh => format!("本期新发现问题 {raised} 个，消除 {closed} 个。"),
            Lang::En => format!("{raised} findings raised in the period, {closed} resolved."),
        },
        match lang {
            Lang::Zh => format!(
                "整改台账销号率 {}，逾期未销号事项 {} 个。",
                percent(figures.closure_permille),
                figures.overdue
            ),
            Lang::En => format!(
                "Ledger closure rate {}, {} items overdue.",
                percent(figures.closure_permille),
                figures.overdue
            ),
        },
        match lang {
            Lang::Zh => format!(
                "本期处罚 {} 项，公开通报 {} 件。",
                figures.penalties.len(),
                figures.bulletins.len()
            ),
            Lang::En => format!(
                "{} penalties imposed, {} cases published.",
                figures.penalties.len(),
                figures.bulletins.len()
            ),
        },
    ];
    let sections = vec![
        balance_section(figures, lang),
        findings_section(figures, lang),
        ledger_section(figures, lang),
        campaigns_section(figures, lang),
        penalties_section(figures, lang),
        bulletins_section(figures, lang),
    ];
    Document {
        lang,
        title,
        subtitle,
        summary,
        sections,
    }
}

fn balance_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    let rows = figures
        .balance
        .iter()
        .map(|row| {
            vec![
                row.jurisdiction.clone(),
                chart::category(lang, row.category).to_owned(),
                row.approved.to_string(),
                row.active.to_string(),
                row.surplus.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    Section {
        id: "balance",
        heading: t(
            lang,
            "一、编制总量余缺",
            "1. Quota against people on the roll (余缺)",
        ),
        figure: (!figures.balance.is_empty())
            .then(|| Figure::Balance(chart::balance_chart(lang, &figures.balance))),
        table: Table {
            headers: vec![
                t(lang, "区划", "Division"),
                t(lang, "编制类别", "Category"),
                t(lang, "核定编制", "Approved"),
                t(lang, "实有人数", "On the roll"),
                t(lang, "余缺", "Surplus"),
            ],
            numeric: vec![false, false, true, true, true],
            rows,
            widths: vec![2, 3, 2, 2, 2],
        },
        empty_note: t(
            lang,
            "辖区内尚无核定编制。",
            "No quota in force in this jurisdiction.",
        ),
    }
}

fn findings_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    let counts: Vec<(String, &'static str, usize)> = figures
        .findings
        .iter()
        .filter(|row| row.raised > 0)
        .map(|row| {
            (
                rule_name(lang, row.code),
                "raised",
                usize::try_from(row.raised).unwrap_or(usize::MAX),
            )
        })
        .collect();
    Section {
        id: "findings",
        heading: t(
            lang,
            "二、问题发现与消除（按规则）",
            "2. Findings raised and resolved, per rule",
        ),
        figure: (!counts.is_empty()).then(|| {
            Figure::Counts(chart::count_chart_at(
                170,
                760,
                t(
                    lang,
                    "本期新发现问题（按规则）",
                    "Findings raised, per rule",
                ),
                &counts,
            ))
        }),
        table: Table {
            headers: vec![
                t(lang, "规则", "Rule"),
                t(lang, "新发现", "Raised"),
                t(lang, "已消除", "Resolved"),
                t(lang, "期末未消除", "Open at end"),
            ],
            numeric: vec![false, true, true, true],
            rows: figures
                .findings
                .iter()
                .map(|row| {
                    vec![
                        rule_name(lang, row.code),
                        row.raised.to_string(),
                        row.closed.to_string(),
                        row.open_at_end.to_string(),
                    ]
                })
                .collect(),
            widths: vec![4, 2, 2, 2],
        },
        empty_note: t(lang, "本期没有发现问题。", "No findings in the period."),
    }
}

fn ledger_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    let counts: Vec<(String, &'static str, usize)> = figures
        .departments
        .iter()
        .map(|row| {
            (
                if row.department_name.is_empty() {
                    row.department_uscc.clone()
                } else {
                    row.department_name.clone()
                },
                "closure",
                usize::try_from(row.closure_permille / 10).unwrap_or(0),
            )
        })
        .collect();
    Section {
        id: "ledger",
        heading: t(
            lang,
            "三、整改台账销号率与逾期事项（按部门）",
            "3. Ledger closure rate and overdue items, per department",
        ),
        figure: (!counts.is_empty()).then(|| {
            Figure::Counts(chart::count_chart_at(
                170,
                760,
                t(lang, "销号率（%）", "Closure rate (%)"),
                &counts,
            ))
        }),
        table: Table {
            headers: vec![
                t(lang, "部门", "Department"),
                t(lang, "应办", "Handled"),
                t(lang, "已销号", "Closed"),
                t(lang, "逾期", "Overdue"),
                t(lang, "销号率", "Closure rate"),
            ],
            numeric: vec![false, true, true, true, true],
            rows: figures
                .departments
                .iter()
                .map(|row| {
                    vec![
                        named(&row.department_name, &row.department_uscc),
                        row.handled.to_string(),
                        row.closed.to_string(),
                        row.overdue.to_string(),
                        percent(row.closure_permille),
                    ]
                })
                .collect(),
            widths: vec![6, 2, 2, 2, 2],
        },
        empty_note: t(lang, "本期台账没有事项。", "No ledger items in the period."),
    }
}

fn campaigns_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    Section {
        id: "campaigns",
        heading: t(
            lang,
            "四、专项检查及结果",
            "4. Special inspections and their results",
        ),
        figure: None,
        table: Table {
            headers: vec![
                t(lang, "专项检查", "Campaign"),
                t(lang, "开始", "Opened"),
                t(lang, "状态", "State"),
                t(lang, "应报单位", "In scope"),
                t(lang, "已报", "Declared"),
                t(lang, "逾期报送", "Late"),
                t(lang, "未报", "Missing"),
                t(lang, "瞒报立项", "Undeclared items"),
            ],
            numeric: vec![false, false, false, true, true, true, true, true],
            rows: figures
                .campaigns
                .iter()
                .map(|row| {
                    vec![
                        row.title.clone(),
                        row.opened_on.clone(),
                        if row.closed {
                            t(lang, "已结束", "closed")
                        } else {
                            t(lang, "进行中", "open")
                        },
                        row.institutions.to_string(),
                        row.declared.to_string(),
                        row.late.to_string(),
                        row.missing.to_string(),
                        row.undeclared_items.to_string(),
                    ]
                })
                .collect(),
            widths: vec![5, 3, 2, 2, 2, 2, 2, 2],
        },
        empty_note: if figures.campaigns_kept {
            t(lang, "本期没有专项检查。", "No campaigns in the period.")
        } else {
            t(
                lang,
                "暂无专项检查（本系统尚未记录专项检查）。",
                "No campaigns (the hub does not keep campaigns).",
            )
        },
    }
}

fn penalties_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    Section {
        id: "penalties",
        heading: t(lang, "五、处罚情况", "5. Penalties"),
        figure: None,
        table: Table {
            headers: vec![
                t(lang, "日期", "Date"),
                t(lang, "单位", "Institution"),
                t(lang, "处罚", "Penalty"),
                t(lang, "核减编制", "Places cut"),
                t(lang, "事由", "Reason"),
            ],
            numeric: vec![false, false, false, true, false],
            rows: figures
                .penalties
                .iter()
                .map(|row| {
                    vec![
                        row.imposed_on.clone(),
                        named(&row.institution_name, &row.institution_uscc),
                        penalty_name(lang, row.kind),
                        row.cut.to_string(),
                        row.text.clone(),
                    ]
                })
                .collect(),
            widths: vec![2, 5, 3, 2, 4],
        },
        empty_note: t(lang, "本期没有处罚。", "No penalties in the period."),
    }
}

fn bulletins_section(figures: &proto::LeadershipReportResponse, lang: Lang) -> Section {
    Section {
        id: "bulletins",
        heading: t(lang, "六、公开通报", "6. Published cases (通报)"),
        figure: None,
        table: Table {
            headers: vec![
                t(lang, "日期", "Date"),
                t(lang, "案件", "Case"),
                t(lang, "通报内容", "Bulletin"),
            ],
            numeric: vec![false, false, false],
            rows: figures
                .bulletins
                .iter()
                .map(|row| {
                    vec![
                        row.published_on.clone(),
                        row.case_id.clone(),
                        row.text.clone(),
                    ]
                })
                .collect(),
            widths: vec![2, 4, 8],
        },
        empty_note: t(
            lang,
            "本期没有公开通报。",
            "No cases published in the period.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> proto::LeadershipReportResponse {
        proto::LeadershipReportResponse {
            jurisdiction: "140100".into(),
            from: "2024-04-01".into(),
            to: "2024-06-30".into(),
            balance: vec![proto::RegionalBalanceRow {
                jurisdiction: "140105".into(),
                category: proto::QuotaCategory::Administrative as i32,
                approved: 10,
                active: 12,
                surplus: -2,
            }],
            findings: vec![proto::RuleFindingsRow {
                code: proto::RuleCode::PaidNotOnRoll as i32,
                raised: 3,
                closed: 1,
                open_at_end: 2,
            }],
            closure_permille: 500,
            overdue: 1,
            ..Default::default()
        }
    }

    #[test]
    fn the_layout_is_chinese_first_with_every_section() {
        let document = layout(&figures(), Lang::Zh);
        let headings: Vec<&str> = document
            .sections
            .iter()
            .map(|s| s.heading.as_str())
            .collect();
        assert_eq!(headings.len(), 6);
        assert!(headings[0].contains("编制总量余缺"));
        assert!(headings[3].contains("专项检查"));
        assert!(
            document.sections[3].empty_note.contains("尚未记录"),
            "figures without campaigns_kept say the hub keeps none"
        );
        assert_eq!(document.sections[1].table.rows[0][0], "吃空饷");
        assert!(
            document.summary[1].contains("50.0%"),
            "{:?}",
            document.summary
        );
        assert!(matches!(
            document.sections[0].figure,
            Some(Figure::Balance(_))
        ));
        assert!(document.sections[2].figure.is_none(), "no departments");
        let english = layout(&figures(), Lang::En);
        assert_eq!(english.sections[1].table.rows[0][0], "paid not on roll");
    }

    #[test]
    fn percentages_keep_one_decimal() {
        assert_eq!(percent(1000), "100.0%");
        assert_eq!(percent(333), "33.3%");
        assert_eq!(percent(0), "0.0%");
    }
}
