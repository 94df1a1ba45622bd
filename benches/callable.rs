//! `cargo bench --bench callable`: next-callable-instant queries per second
//! on one core, for a realistic calendar under TCPA quiet hours, for a
//! contact in one zone and a contact whose number spans two zones.

use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use flowc::calendar::Schedule;
use flowc::ir::{self, Window};

/// The first use of the public holiday table parses it; and a calendar file
/// of 1,000 events, a tenth of them yearly, read and expanded.
fn loading() {
    let t = Instant::now();
    let known = flowc::calendar::holidays::known("MA");
    let table = t.elapsed();
    assert!(known);
    println!(
        "holiday table: {} regions, {} KB, parsed on first use in {:.2} ms",
        flowc::calendar::holidays::regions().len(),
        include_str!("../data/holidays.txt").len() / 1000,
        table.as_secs_f64() * 1e3
    );
    let mut ics = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-TIMEZONE:Europe/Paris\r\n");
    for i in 0..1000u32 {
        let day =
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(u64::from(i % 365));
        ics.push_str("BEGIN:VEVENT\r\n");
        if i % 10 == 0 {
            ics.push_str(&format!(
                "DTSTART;VALUE=DATE:{}\r\nRRULE:FREQ=YEARLY\r\n",
                day.format("%Y%m%d")
            ));
        } else {
            ics.push_str(&format!(
                "DTSTART:{}T09{:02}00Z\r\nDURATION:PT2H\r\n",
                day.format("%Y%m%d"),
                i % 60
            ));
        }
        ics.push_str(&format!("SUMMARY:Closure {i}\r\nEND:VEVENT\r\n"));
    }
    ics.push_str("END:VCALENDAR\r\n");
    let mut best = f64::MAX;
    let mut closures = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let read = flowc::calendar::ics::read(&ics);
        assert!(read.problems.is_empty(), "{:?}", read.problems.first());
        best = best.min(t.elapsed().as_secs_f64());
        closures = read.closures.len();
    }
    println!(
        "calendar file: 1,000 events ({} KB) read into {closures} closures in {:.2} ms (best of 5)",
        ics.len() / 1000,
        best * 1e3
    );
}

fn main() {
    loading();
    let w = |s: u16, e: u16| Window { start: s, end: e };
    let mut weekly: ir::Week = Default::default();
    for day in weekly.iter_mut().take(5) {
        *day = vec![w(540, 720), w(780, 1200)]; // 09:00-20:00 with a 12:00-13:00 lunch pause
    }
    weekly[5] = vec![w(600, 840)]; // Saturday 10:00-14:00
    let closed = ["2026-12-25", "2027-01-01", "2027-07-05", "2027-11-25"]
        .iter()
        .map(|d| ir::Closed {
            date: NaiveDate::from_str(d).unwrap(),
            window: None,
            label: None,
        })
        .collect();
    let calendar = ir::Calendar {
        name: "us_business".into(),
        weekly,
        closed,
        open: Vec::new(),
    };
    let tcpa = ir::Policy {
        name: "tcpa".into(),
        quiet_hours: vec![w(21 * 60, 8 * 60)],
        ..Default::default()
    };
    let schedule = Schedule::new(Some(&calendar), &[&tcpa]);
    // The same under the US public holidays (`no holidays "US"`).
    let us_holidays = ir::Policy {
        name: "holidays".into(),
        no_holidays: vec!["US".into()],
        ..Default::default()
    };
    let with_holidays = Schedule::new(Some(&calendar), &[&tcpa, &us_holidays]);

    // Query instants spread over two years, every 7 minutes and 13 seconds.
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let queries: Vec<DateTime<Utc>> = (0..200_000)
        .map(|i| start + Duration::seconds(i * 433))
        .collect();

    for (label, zones, schedule) in [
        (
            "one zone (America/New_York)",
            vec![Tz::America__New_York],
            &schedule,
        ),
        (
            "two zones (America/Denver + America/North_Dakota/Center)",
            vec![Tz::America__Denver, Tz::America__North_Dakota__Center],
            &schedule,
        ),
        (
            "one zone, and the US public holidays",
            vec![Tz::America__New_York],
            &with_holidays,
        ),
    ] {
        let mut best = f64::MAX;
        let mut checksum = 0i64;
        for _ in 0..5 {
            let t = Instant::now();
            for q in &queries {
                checksum += schedule
                    .next_callable(*q, &zones)
                    .map_or(0, |n| n.timestamp() & 1);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let per_second = queries.len() as f64 / best;
        println!(
            "{label:<58} {:>6.2} M queries/s ({:.0} ns each; checksum {checksum})",
            per_second / 1e6,
            best * 1e9 / queries.len() as f64
        );
    }
}
