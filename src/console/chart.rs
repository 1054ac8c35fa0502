//! The 余缺 chart: quota against people on the roll per division and category, drawn as inline
//! SVG on the server (no script). The geometry is computed here; the template only places it.

use super::Lang;
use crate::proto;

/// Width of the drawing, in SVG units.
const WIDTH: u32 = 760;
/// Where the bars start (the labels are left of it).
const LEFT: u32 = 230;
/// Room right of the bars for the numbers.
const RIGHT: u32 = 110;
/// Height of one division-and-category group (two bars and a gap).
const GROUP: u32 = 34;
/// Height of one bar.
const BAR: u32 = 12;

/// A horizontal bar chart of the regional balance.
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub bar_height: u32,
    pub bars: Vec<BalanceBars>,
    /// The chart's title, also its accessible name.
    pub title: String,
    /// What it shows, for assistive technology.
    pub description: String,
}

/// One division and category: a bar for the quota, one for the people.
pub struct BalanceBars {
    pub label: String,
    /// Top of the quota bar.
    pub y: u32,
    /// Top of the people bar.
    pub y_active: u32,
    /// Baseline of the label.
    pub label_y: u32,
    pub approved_width: u32,
    pub active_width: u32,
    pub approved: i64,
    pub active: i64,
    pub surplus: i64,
    /// Where the numbers go.
    pub number_x: u32,
    /// Whether people exceed the quota (a shortfall of quota).
    pub short: bool,
}

/// The chart of RegionalBalance's rows.
pub fn balance_chart(lang: Lang, rows: &[proto::RegionalBalanceRow]) -> Chart {
    let largest = rows
        .iter()
        .map(|row| row.approved.max(row.active))
        .max()
        .unwrap_or(0)
        .max(1);
    let span = WIDTH - LEFT - RIGHT;
    let scale = |value: i64| -> u32 {
        let value = u64::try_from(value.max(0)).unwrap_or(0);
        let largest = u64::try_from(largest).unwrap_or(1);
        u32::try_from(value * u64::from(span) / largest).unwrap_or(span)
    };
    let bars: Vec<BalanceBars> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let top = 8 + u32::try_from(index).unwrap_or(0) * GROUP;
            let approved_width = scale(row.approved);
            let active_width = scale(row.active);
            BalanceBars {
                label: format!("{} {}", row.jurisdiction, category(lang, row.category)),
                y: top,
                y_active: top + BAR + 1,
                label_y: top + BAR + 4,
                approved_width,
                active_width,
                approved: row.approved,
                active: row.active,
                surplus: row.surplus,
                number_x: LEFT + approved_width.max(active_width) + 6,
                short: row.surplus < 0,
            }
        })
        .collect();
    let height = 16 + u32::try_from(bars.len()).unwrap_or(0) * GROUP;
    let (title, description) = match lang {
        Lang::Zh => (
            "编制总量余缺".to_owned(),
            format!(
                "{} 个区划与编制类别：每组上方为核定编制数，下方为实有人数；实有人数超过编制时标为红色。",
                bars.len()
            ),
        ),
        Lang::En => (
            "Quota against people on the roll".to_owned(),
            format!(
                "{} divisions and categories: in each group the upper bar is the approved quota, the lower the people on the roll, red where people exceed the quota.",
                bars.len()
            ),
        ),
    };
    Chart {
        width: WIDTH,
        height,
        left: LEFT,
        bar_height: BAR,
        bars,
        title,
        description,
    }
}

fn category_label(lang: Lang, category: i32) -> &'static str {
    use proto::QuotaCategory as C;
    let (zh, en) = match proto::QuotaCategory::try_from(category) {
        Ok(C::Administrative) => ("行政编制", "administrative"),
        Ok(C::PoliticalLegal) => ("政法专项编制", "political-legal"),
        Ok(C::PublicInstitution) => ("事业编制", "public institution"),
        Ok(C::CivilServiceManaged) => ("参公事业编制", "civil-service managed"),
        Ok(C::ServiceWorker) => ("工勤编制", "service worker"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// A category in `lang`, for the chart.
pub fn category(lang: Lang, category: i32) -> &'static str {
    category_label(lang, category)
}
