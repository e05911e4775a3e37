//! What a batch leaves for the instructor, made from journal entries as
//! they come:
//! gradebook.csv, one Markdown feedback file per learner, a summary (a text
//! histogram of scores, the checks failed most often, what could not be
//! graded) on the terminal and in summary.md, and the histogram as an SVG.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::journal::{Entry, EntryStatus};
use crate::checks::Status;
use crate::report::{Format, Markdown, Report, points};

/// What the gradebook and summary need of one learner: a few hundred
/// bytes, so a batch's memory stays flat however large the class (the
/// full reports live in the journal and the feedback files).
#[derive(Debug, Clone)]
pub struct Row {
    pub learner: String,
    pub status: EntryStatus,
    pub why: Option<String>,
    /// (score, max) when there is a report.
    pub total: Option<(f64, f64)>,
    /// (check id, points or None when not graded, status) in report order.
    pub checks: Vec<(String, Option<f64>, Status)>,
}

impl Row {
    pub fn of(entry: &Entry) -> Row {
        Row {
            learner: entry.learner.clone(),
            status: entry.status,
            why: entry.why.as_deref().map(crate::text::visible),
            total: entry.report.as_ref().map(|r| (r.score, r.max_score)),
            checks: entry
                .report
                .iter()
                .flat_map(|r| {
                    r.checks
                        .iter()
                        .map(|c| (c.id.clone(), c.graded.then_some(c.score), c.status))
                })
                .collect(),
        }
    }

    pub fn graded(&self) -> bool {
        self.status == EntryStatus::Graded
    }

    /// The score in percent of the maximum: only for a grade that is final
    /// (an incomplete one has none, so it never enters a histogram).
    pub fn percent(&self) -> Option<f64> {
        match self.total {
            Some((score, max)) if self.graded() && max > 0.0 => {
                Some((score / max * 100.0).clamp(0.0, 100.0))
            }
            _ => None,
        }
    }
}

/// Score bands of the histogram, in percent of the maximum.
const BANDS: usize = 10;

pub struct Outputs {
    /// The terminal summary (also written to summary.md).
    pub summary: String,
    /// The gradebook as a compact table for the terminal.
    pub table: String,
}

/// Writes the gradebook, summary and plot for `rows` into `out`.
pub fn write_all(rows: &BTreeMap<String, Row>, out: &Path) -> std::io::Result<Outputs> {
    let checks = check_ids(rows);
    write_csv(rows, &checks, &out.join("gradebook.csv"))?;
    let histogram = histogram(rows);
    std::fs::write(out.join("scores.svg"), svg(&histogram))?;
    let summary = summary(rows, &histogram);
    std::fs::write(
        out.join("summary.md"),
        format!("# Batch summary\n\n```\n{summary}```\n"),
    )?;
    Ok(Outputs {
        summary,
        table: table(rows),
    })
}

/// Check ids in the order the reports list them.
fn check_ids(rows: &BTreeMap<String, Row>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (id, _, _) in rows.values().flat_map(|r| &r.checks) {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

fn status_text(row: &Row) -> String {
    match &row.why {
        Some(why) => format!("{}: {why}", row.status),
        None => row.status.to_string(),
    }
}

/// A text cell a spreadsheet will not run: one that would start a formula
/// (=, +, -, @, or a tab or carriage return before one) gets a leading '.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn write_csv(rows: &BTreeMap<String, Row>, checks: &[String], path: &Path) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_path(path)?;
    let mut header = vec![
        "learner".to_string(),
        "score".into(),
        "max".into(),
        "percent".into(),
    ];
    header.extend(checks.iter().cloned());
    header.push("status".into());
    csv.write_record(&header)?;
    for row in rows.values() {
        let mut record = vec![cell(&row.learner)];
        match row.total {
            Some((score, max)) => {
                record.push(points(score));
                record.push(points(max));
                record.push(row.percent().map(|p| format!("{p:.1}")).unwrap_or_default());
                // A check not graded has no points yet: an empty cell, not
                // a 0 that reads like a failure (the status says why).
                for id in checks {
                    let cell = row
                        .checks
                        .iter()
                        .find(|(c, _, _)| c == id)
                        .and_then(|(_, p, _)| p.map(points));
                    record.push(cell.unwrap_or_default());
                }
            }
            None => record.extend(std::iter::repeat_n(String::new(), 3 + checks.len())),
        }
        record.push(cell(&status_text(row)));
        csv.write_record(&record)?;
    }
    csv.flush()
}

/// The report a learner may see: without hidden checks unless asked.
fn learner_view(report: &Report, show_hidden: bool) -> Report {
    let mut view = report.clone();
    if !show_hidden {
        let hidden = view.checks.iter().filter(|c| c.hidden).count();
        view.checks.retain(|c| !c.hidden);
        view.hidden_checks += hidden;
        view.score = view.checks.iter().map(|c| c.score).sum();
        view.max_score = view.checks.iter().map(|c| c.max_score).sum();
    }
    view
}

/// Writes `feedback/LEARNER.md` for one journal entry.
pub fn write_feedback(entry: &Entry, dir: &Path, show_hidden: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(dir.join(format!("{}.md", entry.learner)))?;
    match &entry.report {
        Some(report) => Markdown.write(&learner_view(report, show_hidden), &mut file),
        None => writeln!(
            file,
            "## Not graded\n\nYour submission could not be graded: {}.\n\nAsk your instructor.",
            entry.why.as_deref().unwrap_or("unknown reason")
        ),
    }
}

/// How many fully graded submissions fall in each band of 10% of the
/// maximum (an incomplete grade is in none).
fn histogram(rows: &BTreeMap<String, Row>) -> [usize; BANDS] {
    let mut bands = [0; BANDS];
    for percent in rows.values().filter_map(Row::percent) {
        let band = ((percent / 10.0) as usize).min(BANDS - 1);
        bands[band] += 1;
    }
    bands
}

fn band_label(i: usize) -> String {
    if i == BANDS - 1 {
        "90-100%".to_string()
    } else {
        format!("{}-{}%", i * 10, i * 10 + 9)
    }
}

fn summary(rows: &BTreeMap<String, Row>, histogram: &[usize; BANDS]) -> String {
    let mut s = String::new();
    let graded = rows.values().filter(|r| r.graded()).count();
    s.push_str(&format!(
        "{graded} of {} submissions graded\n\n",
        rows.len()
    ));
    s.push_str("Scores (percent of the maximum):\n");
    let most = histogram.iter().copied().max().unwrap_or(0).max(1);
    for (i, &n) in histogram.iter().enumerate().rev() {
        let bar = "█".repeat((n * 40).div_ceil(most));
        s.push_str(&format!("  {:>7}  {bar} {n}\n", band_label(i)));
    }
    let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _, status) in rows.values().flat_map(|r| &r.checks) {
        if *status == Status::Failed {
            *failed.entry(id).or_default() += 1;
        }
    }
    let mut failed: Vec<(&str, usize)> = failed.into_iter().collect();
    failed.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !failed.is_empty() {
        s.push_str("\nChecks failed most often:\n");
        for (id, n) in failed.iter().take(5) {
            s.push_str(&format!("  {id:<20} {n}\n"));
        }
    }
    let ungraded: Vec<&Row> = rows.values().filter(|r| !r.graded()).collect();
    if !ungraded.is_empty() {
        s.push_str("\nNot fully graded:\n");
        for e in ungraded {
            s.push_str(&format!("  {}: {}\n", e.learner, status_text(e)));
        }
    }
    s
}

fn table(rows: &BTreeMap<String, Row>) -> String {
    let width = rows.keys().map(|k| k.len()).max().unwrap_or(7).max(7);
    let mut s = format!("{:<width$}  {:>9}  status\n", "learner", "score");
    for r in rows.values() {
        let score = match (r.total, r.graded()) {
            (Some((score, max)), true) => format!("{}/{}", points(score), points(max)),
            (Some((score, max)), false) => format!("{}?/{}", points(score), points(max)),
            (None, _) => "-".into(),
        };
        s.push_str(&format!(
            "{:<width$}  {score:>9}  {}\n",
            r.learner,
            status_text(r)
        ));
    }
    s
}

/// The histogram as a small bar chart.
fn svg(histogram: &[usize; BANDS]) -> String {
    let (w, h, left, bottom, top) = (640.0, 320.0, 40.0, 40.0, 30.0);
    let most = histogram.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar_w = (w - left - 10.0) / BANDS as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"{left}\" y=\"18\" font-size=\"14\">Scores (percent of the maximum), {} graded</text>\n",
        histogram.iter().sum::<usize>()
    );
    for (i, &n) in histogram.iter().enumerate() {
        let bar_h = (h - bottom - top) * n as f64 / most;
        let x = left + i as f64 * bar_w;
        let y = h - bottom - bar_h;
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar_h:.1}\" fill=\"#4a7ebb\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x + 2.0,
            bar_w - 4.0,
            x + bar_w / 2.0,
            y - 4.0,
            x + bar_w / 2.0,
            h - bottom + 16.0,
            band_label(i)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n</svg>\n",
        h - bottom,
        w - 10.0
    ));
    s
}
