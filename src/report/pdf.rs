//! The report as a PDF, made by the hub itself with krilla: nothing is fetched at run time, the
//! CJK font is read from the configured file (`report.font`) and embedded as a subset of the
//! glyphs used, and the charts are drawn as vector paths from [`crate::chart`]'s geometry. The
//! layout is computed first as pages of drawing operations ([`paginate`], pure and tested
//! without a font), then drawn.

use std::sync::Arc;

use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::{Font, TextDirection};

use super::{Document, Figure, Section};
use crate::chart::{Chart, CountChart, Lang};
use crate::error::{Error, Result};

/// A4 in points.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const MARGIN: f32 = 50.0;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
const BOTTOM: f32 = PAGE_HEIGHT - MARGIN;
/// Table text size and line height.
const CELL_SIZE: f32 = 9.0;
const LINE: f32 = 12.5;

/// A colour, as RGB.
pub type Colour = (u8, u8, u8);

const INK: Colour = (27, 31, 36);
const GREY: Colour = (85, 85, 85);
const RULE: Colour = (190, 196, 206);
const HEADER_FILL: Colour = (238, 241, 245);
const APPROVED: Colour = (74, 116, 181);
const ACTIVE: Colour = (143, 180, 90);
const SHORT: Colour = (192, 57, 43);
const RAISED: Colour = (217, 130, 43);

/// One drawing operation on a page, in points from the top left.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Text whose baseline starts at (x, y).
    Text {
        x: f32,
        y: f32,
        size: f32,
        colour: Colour,
        text: String,
    },
    /// A filled rectangle.
    Rect {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        colour: Colour,
    },
}

/// The width `text` takes at `size`, estimated: CJK ideographs and full-width forms a whole em,
/// other characters a little over half (Noto Sans CJK's Latin figures and letters).
pub fn text_width(text: &str, size: f32) -> f32 {
    text.chars()
        .map(|c| if c.is_ascii() { 0.56 } else { 1.0 })
        .sum::<f32>()
        * size
}

/// `text` broken into lines no wider than `width` at `size`.
fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for c in text.chars() {
        line.push(c);
        if text_width(&line, size) > width && line.chars().count() > 1 {
            line.pop();
            lines.push(std::mem::take(&mut line));
            line.push(c);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Pages of operations, filled top to bottom.
struct Pages {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Pages {
    fn new() -> Pages {
        Pages {
            pages: vec![Vec::new()],
            y: MARGIN,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("there is always a page")
    }

    /// Starts a new page unless `height` more fits on this one.
    fn room_for(&mut self, height: f32) {
        if self.y + height > BOTTOM && self.y > MARGIN {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
    }

    fn text(&mut self, x: f32, baseline: f32, size: f32, colour: Colour, text: &str) {
        self.ops().push(Op::Text {
            x,
            y: baseline,
            size,
            colour,
            text: text.to_owned(),
        });
    }

    fn rect(&mut self, x: f32, y: f32, width: f32, height: f32, colour: Colour) {
        if width > 0.0 && height > 0.0 {
            self.ops().push(Op::Rect {
                x,
                y,
                width,
                height,
                colour,
            });
        }
    }

    /// A paragraph of wrapped text.
    fn paragraph(&mut self, size: f32, colour: Colour, text: &str) {
        for line in wrap(text, size, CONTENT_WIDTH) {
            self.room_for(size * 1.5);
            self.y += size * 1.3;
            let y = self.y;
            self.text(MARGIN, y, size, colour, &line);
            self.y += size * 0.3;
        }
    }
}

/// The report laid out on A4 pages.
pub fn paginate(document: &Document) -> Vec<Vec<Op>> {
    let mut pages = Pages::new();
    pages.paragraph(17.0, INK, &document.title);
    pages.y += 2.0;
    pages.paragraph(10.0, GREY, &document.subtitle);
    pages.y += 6.0;
    for line in &document.summary {
        pages.paragraph(10.5, INK, &format!("• {line}"));
    }
    for section in &document.sections {
        section_ops(&mut pages, section, document.lang);
    }
    pages.pages
}

fn section_ops(pages: &mut Pages, section: &Section, lang: Lang) {
    pages.room_for(70.0);
    pages.y += 14.0;
    pages.paragraph(13.0, INK, &section.heading);
    let y = pages.y + 2.0;
    pages.rect(MARGIN, y, CONTENT_WIDTH, 0.8, RULE);
    pages.y += 8.0;
    match &section.figure {
        Some(Figure::Balance(chart)) => balance_ops(pages, chart, lang),
        Some(Figure::Counts(chart)) => count_ops(pages, chart),
        None => {}
    }
    if section.table.rows.is_empty() {
        pages.paragraph(10.0, GREY, &section.empty_note);
    } else {
        table_ops(pages, section);
    }
}

/// The chart's scale from its SVG units to points, and the room it takes.
fn scale_of(width: u32, height: u32) -> (f32, f32) {
    let scale = (CONTENT_WIDTH / width.max(1) as f32).min(1.0);
    (scale, height as f32 * scale)
}

fn balance_ops(pages: &mut Pages, chart: &Chart, lang: Lang) {
    let (scale, height) = scale_of(chart.width, chart.height);
    pages.room_for(height + 16.0);
    let (x0, y0) = (MARGIN, pages.y);
    let size = 11.0 * scale;
    let left = x0 + chart.left as f32 * scale;
    for bar in &chart.bars {
        let label_y = y0 + bar.label_y as f32 * scale;
        pages.text(
            left - 6.0 * scale - text_width(&bar.label, size),
            label_y,
            size,
            INK,
            &bar.label,
        );
        pages.rect(
            left,
            y0 + bar.y as f32 * scale,
            bar.approved_width as f32 * scale,
            chart.bar_height as f32 * scale,
            APPROVED,
        );
        pages.rect(
            left,
            y0 + bar.y_active as f32 * scale,
            bar.active_width as f32 * scale,
            chart.bar_height as f32 * scale,
            if bar.short { SHORT } else { ACTIVE },
        );
        pages.text(
            x0 + bar.number_x as f32 * scale,
            label_y,
            size,
            INK,
            &format!("{} / {}", bar.approved, bar.active),
        );
    }
    pages.y += height;
    // The key: what the two bars of a group are.
    let key = [
        (APPROVED, chart_key(lang, 0)),
        (ACTIVE, chart_key(lang, 1)),
        (SHORT, chart_key(lang, 2)),
    ];
    let mut x = MARGIN;
    let y = pages.y + 4.0;
    for (colour, label) in key {
        pages.rect(x, y, 8.0, 8.0, colour);
        pages.text(x + 11.0, y + 7.5, 8.5, INK, label);
        x += 20.0 + text_width(label, 8.5);
    }
    pages.y += 16.0;
}

/// The balance chart's key in `lang`.
fn chart_key(lang: Lang, index: usize) -> &'static str {
    let zh = lang == Lang::Zh;
    match (zh, index) {
        (true, 0) => "核定编制",
        (true, 1) => "实有人数",
        (true, _) => "超编",
        (false, 0) => "approved quota",
        (false, 1) => "people on the roll",
        (false, _) => "over quota",
    }
}

fn count_ops(pages: &mut Pages, chart: &CountChart) {
    let (scale, height) = scale_of(chart.width, chart.height + 20);
    pages.room_for(height + 8.0);
    let size = 11.0 * scale;
    pages.text(MARGIN, pages.y + 12.0 * scale, size, GREY, &chart.title);
    let (x0, y0) = (MARGIN, pages.y + 20.0 * scale);
    let left = x0 + chart.left as f32 * scale;
    for bar in &chart.bars {
        let label_y = y0 + bar.label_y as f32 * scale;
        pages.text(
            left - 6.0 * scale - text_width(&bar.label, size),
            label_y,
            size,
            INK,
            &bar.label,
        );
        pages.rect(
            left,
            y0 + bar.y as f32 * scale,
            bar.width as f32 * scale,
            16.0 * scale,
            if bar.class == "raised" {
                RAISED
            } else {
                APPROVED
            },
        );
        pages.text(
            x0 + bar.number_x as f32 * scale,
            label_y,
            size,
            INK,
            &bar.count.to_string(),
        );
    }
    pages.y += height + 8.0;
}

fn table_ops(pages: &mut Pages, section: &Section) {
    let table = &section.table;
    let total: u32 = table.widths.iter().sum::<u32>().max(1);
    let widths: Vec<f32> = table
        .widths
        .iter()
        .map(|w| CONTENT_WIDTH * *w as f32 / total as f32)
        .collect();
    let lines_of = |cells: &[String]| -> Vec<Vec<String>> {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| wrap(cell, CELL_SIZE, width - 6.0))
            .collect()
    };
    let height_of =
        |lines: &[Vec<String>]| lines.iter().map(Vec::len).max().unwrap_or(1) as f32 * LINE + 4.0;
    let draw = |pages: &mut Pages, lines: &[Vec<String>], header: bool| {
        let height = height_of(lines);
        let top = pages.y;
        if header {
            pages.rect(MARGIN, top, CONTENT_WIDTH, height, HEADER_FILL);
        }
        let mut x = MARGIN;
        for (index, (cell_lines, width)) in lines.iter().zip(&widths).enumerate() {
            let numeric = table.numeric.get(index).copied().unwrap_or(false);
            for (n, line) in cell_lines.iter().enumerate() {
                let baseline = top + 2.0 + (n as f32 + 1.0) * LINE - 3.0;
                let at = if numeric {
                    x + width - 3.0 - text_width(line, CELL_SIZE)
                } else {
                    x + 3.0
                };
                let colour = if numeric && !header && line.starts_with('-') {
                    SHORT
                } else {
                    INK
                };
                pages.text(at, baseline, CELL_SIZE, colour, line);
            }
            x += width;
        }
        pages.rect(MARGIN, top + height, CONTENT_WIDTH, 0.5, RULE);
        pages.y = top + height + 0.5;
    };
    let headers = lines_of(&table.headers);
    let first = table.rows.first().map(|row| height_of(&lines_of(row)));
    pages.room_for(height_of(&headers) + first.unwrap_or(0.0));
    draw(pages, &headers, true);
    for row in &table.rows {
        let lines = lines_of(row);
        if pages.y + height_of(&lines) > BOTTOM {
            // A new page starts with the headings again.
            pages.pages.push(Vec::new());
            pages.y = MARGIN;
            draw(pages, &headers, true);
        }
        draw(pages, &lines, false);
    }
    pages.y += 6.0;
}

/// Reads the font at `path` (a TrueType/OpenType file or collection). In a collection such as
/// Noto Sans CJK's the Simplified Chinese face is the third (index 2); a single face is index 0.
pub fn load_font(path: &std::path::Path) -> Result<Font> {
    let bytes = std::fs::read(path).map_err(|error| {
        Error::FailedPrecondition(format!(
            "the report's font {} cannot be read ({error}); install fonts-noto-cjk or set report.font",
            path.display()
        ))
    })?;
    let data: krilla::Data = Arc::new(bytes).into();
    Font::new(data.clone(), 2)
        .or_else(|| Font::new(data, 0))
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{} is not a font the report can use (report.font)",
                path.display()
            ))
        })
}

fn fill(colour: Colour) -> Fill {
    Fill {
        paint: rgb::Color::new(colour.0, colour.1, colour.2).into(),
        opacity: NormalizedF32::ONE,
        rule: krilla::paint::FillRule::default(),
    }
}

/// The report as PDF bytes, in `font`.
pub fn render(document: &Document, font: &Font) -> Result<Vec<u8>> {
    let mut pdf = krilla::Document::new();
    let settings = || {
        PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
            .ok_or_else(|| Error::Internal("A4 is a page size".into()))
    };
    let pages = paginate(document);
    let count = pages.len();
    for (number, ops) in pages.into_iter().enumerate() {
        let mut page = pdf.start_page_with(settings()?);
        let mut surface = page.surface();
        surface.set_stroke(None);
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    colour,
                    text,
                } => {
                    surface.set_fill(Some(fill(colour)));
                    surface.draw_text(
                        Point::from_xy(x, y),
                        font.clone(),
                        size,
                        &text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect {
                    x,
                    y,
                    width,
                    height,
                    colour,
                } => {
                    let mut path = PathBuilder::new();
                    if let Some(rect) = Rect::from_xywh(x, y, width, height) {
                        path.push_rect(rect);
                    }
                    if let Some(path) = path.finish() {
                        surface.set_fill(Some(fill(colour)));
                        surface.draw_path(&path);
                    }
                }
            }
        }
        // The page's number, centred at the foot.
        let folio = format!("{} / {count}", number + 1);
        surface.set_fill(Some(fill(GREY)));
        surface.draw_text(
            Point::from_xy(
                PAGE_WIDTH / 2.0 - text_width(&folio, 8.0) / 2.0,
                PAGE_HEIGHT - MARGIN / 2.0,
            ),
            font.clone(),
            8.0,
            &folio,
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    pdf.finish()
        .map_err(|error| Error::Internal(format!("cannot make the report's PDF: {error:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;

    #[test]
    fn text_is_wrapped_to_the_width_and_cjk_counts_a_whole_em() {
        assert!((text_width("编制", 10.0) - 20.0).abs() < f32::EPSILON);
        assert!(text_width("12", 10.0) < 12.0);
        let lines = wrap("核减空余编制核减空余编制", 10.0, 45.0);
        assert_eq!(lines, vec!["核减空余", "编制核减", "空余编制"]);
        assert_eq!(wrap("", 10.0, 45.0), vec![String::new()]);
    }

    #[test]
    fn long_tables_go_on_to_new_pages_with_their_headings_and_stay_in_the_margins() {
        let figures = proto::LeadershipReportResponse {
            jurisdiction: "140100".into(),
            from: "2024-04-01".into(),
            to: "2024-06-30".into(),
            bulletins: (0..120)
                .map(|i| proto::BulletinLine {
                    id: format!("BU-{i}"),
                    case_id: format!("CA-{i}"),
                    published_on: "2024-05-01".into(),
                    text: "某单位吃空饷问题已查处，予以通报。".into(),
                })
                .collect(),
            ..Default::default()
        };
        let document = super::super::layout(&figures, Lang::Zh);
        let pages = paginate(&document);
        assert!(pages.len() >= 3, "{} pages", pages.len());
        for page in &pages {
            for op in page {
                let (y, bottom) = match op {
                    Op::Text { y, .. } => (*y, *y),
                    Op::Rect { y, height, .. } => (*y, *y + *height),
                };
                assert!(y >= MARGIN - 1.0 && bottom <= BOTTOM + 1.0, "{op:?}");
            }
        }
        let heading_rows = pages
            .iter()
            .skip(1)
            .filter(|page| {
                page.iter()
                    .any(|op| matches!(op, Op::Text { text, .. } if text == "通报内容"))
            })
            .count();
        assert_eq!(
            heading_rows,
            pages.len() - 1,
            "each page repeats the headings"
        );
    }
}
