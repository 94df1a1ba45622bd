//! `flowc report --format html`: one self-contained HTML file a campaign
//! manager reads at a glance. Charts are SVG drawn here (no script, nothing
//! fetched), every bar carries its number, axes are labelled, and the
//! colours are the Okabe–Ito palette, which colour-blind readers tell apart.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Datelike, Timelike};

use super::{patterns, percent, Report};
use crate::ir::{self, Outcome};
use crate::record::ContactResult;

/// Okabe–Ito: blue, orange, bluish green, vermillion, reddish purple, sky
/// blue, yellow, grey.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Escapes text for HTML and SVG (and drops the backticks that mark names
/// in the terminal's words).
fn esc(s: &str) -> String {
    s.replace('`', "")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The 95% Wilson interval of a proportion, in percent.
pub fn wilson(successes: u64, total: u64) -> Option<(f64, f64)> {
    if total == 0 {
        return None;
    }
    let (n, p, z) = (total as f64, successes as f64 / total as f64, 1.96_f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt() / (1.0 + z * z / n);
    Some((
        ((centre - half).max(0.0) * 1000.0).round() / 10.0,
        ((centre + half).min(1.0) * 1000.0).round() / 10.0,
    ))
}

/// A vertical bar chart: one bar per (label, value in percent, note).
fn bars(title: &str, x_label: &str, y_label: &str, data: &[(String, f64, String)]) -> String {
    let (w, h, left, bottom, top) = (640.0, 260.0, 56.0, 44.0, 28.0);
    let plot_h = h - bottom - top;
    let step = (w - left - 10.0) / data.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    for tick in [0, 25, 50, 75, 100] {
        let y = top + plot_h * (1.0 - f64::from(tick) / 100.0);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x2}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end" font-size="11">{tick}%</text>"##,
            x2 = w - 10.0,
            tx = left - 6.0,
            ty = y + 4.0
        );
    }
    for (i, (label, value, note)) in data.iter().enumerate() {
        let bh = plot_h * value.clamp(0.0, 100.0) / 100.0;
        let bw = (step * 0.7).min(90.0);
        let x = left + step * i as f64 + (step - bw) / 2.0;
        let y = top + plot_h - bh;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{c}"><title>{l}: {value:.1}% {n}</title></rect><text x="{cx:.1}" y="{vy:.1}" text-anchor="middle" font-size="11">{value:.1}%</text><text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" font-size="11">{l}</text>"##,
            c = PALETTE[0],
            l = esc(label),
            n = esc(note),
            cx = x + bw / 2.0,
            vy = (y - 4.0).max(11.0),
            ly = h - bottom + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{cx}" y="{by}" text-anchor="middle" font-size="12">{xl}</text><text x="14" y="{cy}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {cy})">{yl}</text></svg>"#,
        cx = left + (w - left) / 2.0,
        by = h - 6.0,
        cy = top + plot_h / 2.0,
        xl = esc(x_label),
        yl = esc(y_label)
    );
    svg
}

/// Stacked horizontal bars: for each attempt, its outcomes' shares.
fn stacked(rows: &[(u32, BTreeMap<&'static str, u64>)]) -> String {
    let names: Vec<&str> = Outcome::DIAL.iter().map(|o| o.name()).collect();
    let (w, row_h, left) = (640.0, 26.0, 80.0);
    // Room for two lines of legend.
    let h = 40.0 + row_h * rows.len() as f64 + 44.0;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Outcomes per attempt"><title>Outcomes per attempt</title>"#
    );
    for (r, (attempt, counts)) in rows.iter().enumerate() {
        let total: u64 = counts.values().sum();
        let y = 10.0 + row_h * r as f64;
        let _ = write!(
            svg,
            r#"<text x="{tx}" y="{ty}" text-anchor="end" font-size="11">attempt {attempt}</text>"#,
            tx = left - 6.0,
            ty = y + 15.0
        );
        let mut x = left;
        for (k, name) in names.iter().enumerate() {
            let n = counts.get(name).copied().unwrap_or(0);
            if n == 0 || total == 0 {
                continue;
            }
            let bw = (w - left - 10.0) * n as f64 / total as f64;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y}" width="{bw:.1}" height="20" fill="{c}"><title>attempt {attempt}, {name}: {n} ({p:.1}%)</title></rect>"##,
                c = PALETTE[k % PALETTE.len()],
                p = percent(n, total)
            );
            if bw > 28.0 {
                let _ = write!(
                    svg,
                    r##"<text x="{cx:.1}" y="{ty}" text-anchor="middle" font-size="10" fill="#000">{n}</text>"##,
                    cx = x + bw / 2.0,
                    ty = y + 14.0
                );
            }
            x += bw;
        }
    }
    // The legend, on as many lines as it takes.
    let mut x = left;
    let mut y = 16.0 + row_h * rows.len() as f64;
    for (k, name) in names.iter().enumerate() {
        let width = 14.0 + 7.0 * name.len() as f64;
        if x + width > w {
            x = left;
            y += 14.0;
        }
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{ty}" font-size="10">{name}</text>"#,
            c = PALETTE[k % PALETTE.len()],
            tx = x + 13.0,
            ty = y + 9.0
        );
        x += width;
    }
    svg.push_str("</svg>");
    svg
}

/// The local hour × weekday heat map of the connection rate, with counts.
fn heat_map(cells: &BTreeMap<(usize, u32), (u64, u64)>) -> String {
    let hours: Vec<u32> = {
        let mut h: Vec<u32> = cells.keys().map(|(_, h)| *h).collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    let (cw, ch, left, top) = (44.0, 30.0, 44.0, 24.0);
    let w = left + cw * hours.len().max(1) as f64 + 10.0;
    let h = top + ch * 7.0 + 10.0;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Connection rate by local hour and weekday"><title>Connection rate by local hour and weekday</title>"#
    );
    for (i, hour) in hours.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="16" text-anchor="middle" font-size="11">{hour:02}h</text>"#,
            x = left + cw * i as f64 + cw / 2.0
        );
    }
    for (d, day) in WEEKDAYS.iter().enumerate() {
        let y = top + ch * d as f64;
        let _ = write!(
            svg,
            r#"<text x="{tx}" y="{ty}" text-anchor="end" font-size="11">{day}</text>"#,
            tx = left - 6.0,
            ty = y + ch / 2.0 + 4.0
        );
        for (i, hour) in hours.iter().enumerate() {
            let x = left + cw * i as f64;
            let Some(&(dialled, answered)) = cells.get(&(d, *hour)) else {
                continue;
            };
            let rate = percent(answered, dialled);
            // Light to dark blue as the rate grows; the text stays readable.
            let shade = (235.0 - 2.0 * rate).clamp(35.0, 235.0) as u8;
            let ink = if rate > 55.0 { "#fff" } else { "#000" };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="rgb({shade},{g},{b})" stroke="#fff"><title>{day} {hour:02}h: {answered}/{dialled} answered ({rate:.1}%)</title></rect><text x="{cx}" y="{ty}" text-anchor="middle" font-size="10" fill="{ink}">{rate:.0}%</text><text x="{cx}" y="{ny}" text-anchor="middle" font-size="8" fill="{ink}">{dialled}</text>"##,
                g = shade.saturating_add(10),
                b = 255,
                cx = x + cw / 2.0,
                ty = y + 13.0,
                ny = y + 24.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML report of a campaign.
pub fn html(flow: &ir::Flow, report: &Report, contacts: &[ContactResult]) -> String {
    let m = &report.metrics;
    let mut per_attempt: BTreeMap<u32, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut cells: BTreeMap<(usize, u32), (u64, u64)> = BTreeMap::new();
    for c in contacts {
        for a in &c.attempts {
            *per_attempt
                .entry(a.number)
                .or_default()
                .entry(a.outcome.name())
                .or_default() += 1;
            let local = a.started_at.with_timezone(&c.zone);
            let cell = cells
                .entry((
                    local.weekday().num_days_from_monday() as usize,
                    local.hour(),
                ))
                .or_default();
            cell.0 += 1;
            cell.1 += u64::from(a.outcome == Outcome::Answered);
        }
    }
    let mut out = String::new();
    let title = flow.title.clone().unwrap_or_else(|| flow.name.clone());
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{t} — flowc report</title><style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}}
h1{{font-size:1.5rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;margin:.5rem 0}} td,th{{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}}
th:first-child,td:first-child{{text-align:left}} .flag{{font-weight:600;color:#D55E00}}
.cards{{display:flex;gap:1rem;flex-wrap:wrap}} .card{{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem}}
.card b{{display:block;font-size:1.4rem}} svg{{max-width:100%;height:auto}} .note{{color:#555;font-size:.9rem}}
</style></head><body><h1>{t}</h1><p class="note">Campaign <code>{n}</code>: {total} contacts. Rates are percents; every figure shows its counts.</p>"#,
        t = esc(&title),
        n = esc(&flow.name),
        total = m.total_contacts
    );
    let _ = write!(
        out,
        r#"<div class="cards"><div class="card">completed<b>{}</b></div><div class="card">failed<b>{}</b></div><div class="card">skipped<b>{}</b></div><div class="card">pending<b>{}</b></div><div class="card">connection rate<b>{:.1}%</b>{} of {}</div><div class="card">calls used<b>{}</b></div><div class="card">attempts per completed contact<b>{:.2}</b></div><div class="card">retry conversion<b>{:.1}%</b>{} of {}</div></div>"#,
        m.contacts_completed,
        m.contacts_failed,
        m.contacts_skipped,
        m.contacts_pending + m.contacts_in_progress,
        m.connection_rate,
        m.contacts_completed,
        m.total_contacts,
        m.calls_used,
        m.average_attempts,
        m.retry_conversion_rate,
        m.reached_on_retry,
        m.first_attempt_missed
    );
    out.push_str("<h2>Connection rate per attempt</h2>");
    let data: Vec<(String, f64, String)> = m
        .per_attempt
        .iter()
        .map(|p| {
            (
                format!("#{} ({}/{})", p.attempt, p.answered, p.dialled),
                p.connection_rate,
                format!("{}/{} answered", p.answered, p.dialled),
            )
        })
        .collect();
    out.push_str(&bars(
        "Connection rate per attempt",
        "attempt (answered/dialled)",
        "answered",
        &data,
    ));
    out.push_str("<h2>Outcomes per attempt</h2>");
    let rows: Vec<(u32, BTreeMap<&'static str, u64>)> = per_attempt.into_iter().collect();
    out.push_str(&stacked(&rows));
    out.push_str("<h2>When people answer: local hour × weekday</h2><p class=\"note\">Each cell: the connection rate of the attempts started then (contact's local time), and how many there were.</p>");
    out.push_str(&heat_map(&cells));
    if !report.arms.is_empty() {
        out.push_str("<h2>Experiment arms</h2><table><tr><th>arm</th><th>contacts</th><th>completed/finished</th><th>connection rate (95% interval)</th><th>calls used</th><th>attempts per completed</th><th>calls per completed contact</th><th>p-value vs first</th></tr>");
        let mut by_rate: Option<(&str, f64)> = None;
        let mut by_cost: Option<(&str, f64)> = None;
        for a in &report.arms {
            let am = &a.metrics;
            let interval = wilson(am.contacts_completed, am.contacts_finished)
                .map_or("—".into(), |(lo, hi)| format!("{lo:.1}–{hi:.1}%"));
            let per_completed = (am.contacts_completed > 0)
                .then(|| am.calls_used as f64 / am.contacts_completed as f64);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{:.1}% ({interval})</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.arm),
                am.total_contacts,
                am.contacts_completed,
                am.contacts_finished,
                am.connection_rate_of_finished,
                am.calls_used,
                am.average_attempts,
                per_completed.map_or("—".into(), |v| format!("{v:.2}")),
                a.p_value.map_or_else(
                    || a.p_value_note.clone().unwrap_or_default(),
                    |p| format!("{p:.4}")
                )
            );
            if by_rate.is_none_or(|(_, r)| am.connection_rate_of_finished > r) {
                by_rate = Some((&a.arm, am.connection_rate_of_finished));
            }
            if let Some(v) = per_completed {
                if by_cost.is_none_or(|(_, c)| v < c) {
                    by_cost = Some((&a.arm, v));
                }
            }
        }
        out.push_str("</table>");
        let _ = write!(
            out,
            "<p>Winner by connection rate: <b>{}</b>. Winner by efficiency (fewest calls per completed contact): <b>{}</b>. A difference is a finding only where its p-value is small (below 0.05) and the intervals do not overlap.</p>",
            by_rate.map_or("—".into(), |(a, r)| format!("{} ({r:.1}%)", esc(a))),
            by_cost.map_or("—".into(), |(a, c)| format!("{} ({c:.2} calls)", esc(a)))
        );
    }
    out.push_str("<h2>Failure patterns</h2>");
    if report.failure_patterns.is_empty() {
        out.push_str(
            "<p class=\"note\">No dimension splits the finished contacts into groups yet.</p>",
        );
    }
    let flagged = patterns::flagged(&report.failure_patterns);
    if !flagged.is_empty() {
        out.push_str(
            "<p>Groups that fail significantly more or less than the rest of the campaign:</p><ul>",
        );
        for (p, g) in flagged.iter().take(10) {
            let _ = write!(
                out,
                "<li class=\"flag\">{} {}: {:.1}% ({}/{}), {:+.1} points against the rest</li>",
                esc(&p.label),
                esc(&g.key),
                g.failure_rate,
                g.failed,
                g.total,
                g.difference
            );
        }
        out.push_str("</ul>");
    }
    for p in &report.failure_patterns {
        let _ = write!(
            out,
            "<h3>By {}</h3><p class=\"note\">Campaign average: {:.1}% of {} failed.</p><table><tr><th>{}</th><th>{}</th><th>failed</th><th>failure rate</th><th>against the rest</th><th>p-value</th></tr>",
            esc(&p.label),
            p.average,
            p.unit,
            esc(&p.label),
            p.unit
        );
        for g in p.groups.iter().take(25) {
            let _ = write!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:+.1}</td><td>{}</td></tr>",
                if g.flagged { " class=\"flag\"" } else { "" },
                esc(&g.key),
                g.total,
                g.failed,
                g.failure_rate,
                g.difference,
                g.p_value.map_or("—".into(), |v| format!("{v:.2e}"))
            );
        }
        out.push_str("</table>");
        if p.groups.len() > 25 {
            let _ = write!(
                out,
                "<p class=\"note\">… and {} more groups (in `report --format json`).</p>",
                p.groups.len() - 25
            );
        }
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">A group is flagged when its difference from the rest is at least {} points over at least {} contacts, with p &lt; {} after a Bonferroni correction. Written by flowc {}.</p></body></html>",
        patterns::MIN_DIFFERENCE,
        patterns::MIN_GROUP,
        patterns::ALPHA,
        env!("CARGO_PKG_VERSION")
    );
    out
}
