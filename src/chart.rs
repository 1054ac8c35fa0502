//! The charts' geometry: quota against people on the roll per division and category (余缺), a
//! count per label, a trend. Computed here and placed by whoever draws it: the console's
//! templates as inline SVG (no script), the leadership report as SVG in its HTML and as paths in
//! its PDF. Neutral ground below both, so that neither imports the other.

pub use crate::lang::Lang;
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

/// A small horizontal bar chart of counts (the severity mix, findings per rule).
pub struct CountChart {
    pub width: u32,
    pub height: u32,
    /// Where the bars start (the labels end left of it).
    pub left: u32,
    pub bars: Vec<CountBar>,
    pub title: String,
}

/// One bar of a [`CountChart`].
pub struct CountBar {
    pub label: String,
    pub class: &'static str,
    pub count: usize,
    pub y: u32,
    pub label_y: u32,
    pub width: u32,
    pub number_x: u32,
}

/// Where a count chart's bars start.
pub const COUNT_LEFT: u32 = 80;

/// Bars of `counts` (label, style class, count), scaled to the largest.
pub fn count_chart(title: String, counts: &[(String, &'static str, usize)]) -> CountChart {
    count_chart_at(COUNT_LEFT, 420, title, counts)
}

/// Bars of `counts` in a drawing `width` wide whose bars start at `left` (room for longer
/// labels), scaled to the largest.
pub fn count_chart_at(
    left: u32,
    width: u32,
    title: String,
    counts: &[(String, &'static str, usize)],
) -> CountChart {
    let span = width.saturating_sub(left + 60).max(1);
    let largest = counts.iter().map(|c| c.2).max().unwrap_or(0).max(1);
    let bars = counts
        .iter()
        .enumerate()
        .map(|(index, (label, class, count))| {
            let y = 4 + u32::try_from(index).unwrap_or(0) * 22;
            let width = u32::try_from(count * span as usize / largest).unwrap_or(span);
            CountBar {
                label: label.clone(),
                class,
                count: *count,
                y,
                label_y: y + 12,
                width,
                number_x: left + width + 6,
            }
        })
        .collect::<Vec<_>>();
    CountChart {
        width,
        left,
        height: 8 + u32::try_from(bars.len()).unwrap_or(0) * 22,
        bars,
        title,
    }
}

/// Open findings over time, as a line over weekly points.
pub struct TrendChart {
    pub width: u32,
    pub height: u32,
    /// The polyline's points (`x,y x,y …`).
    pub points: String,
    pub marks: Vec<TrendMark>,
    pub title: String,
    pub description: String,
    pub largest: usize,
}

/// One week's point, with its label.
pub struct TrendMark {
    pub x: u32,
    pub y: u32,
    pub label: String,
    pub count: usize,
}

/// The line of `weeks` (label, open findings at the end of it), oldest first.
pub fn trend_chart(lang: Lang, weeks: &[(String, usize)]) -> TrendChart {
    let (width, height, left, top, bottom) = (760u32, 180u32, 40u32, 16u32, 30u32);
    let largest = weeks.iter().map(|w| w.1).max().unwrap_or(0).max(1);
    let span_x = width - left - 20;
    let span_y = height - top - bottom;
    let steps = u32::try_from(weeks.len().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let marks: Vec<TrendMark> = weeks
        .iter()
        .enumerate()
        .map(|(index, (label, count))| {
            let x = left + u32::try_from(index).unwrap_or(0) * span_x / steps;
            let y = top + span_y - u32::try_from(count * span_y as usize / largest).unwrap_or(0);
            TrendMark {
                x,
                y,
                label: label.clone(),
                count: *count,
            }
        })
        .collect();
    let points = marks
        .iter()
        .map(|mark| format!("{},{}", mark.x, mark.y))
        .collect::<Vec<_>>()
        .join(" ");
    let (title, description) = match lang {
        Lang::Zh => (
            "未消除问题走势".to_owned(),
            format!("最近 {} 周每周末未消除的问题数。", weeks.len()),
        ),
        Lang::En => (
            "Open findings over time".to_owned(),
            format!(
                "Findings open at the end of each of the last {} weeks.",
                weeks.len()
            ),
        ),
    };
    TrendChart {
        width,
        height,
        points,
        marks,
        title,
        description,
        largest,
    }
}
