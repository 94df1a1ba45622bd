//! Public holidays of the regions a compliance policy can close (`no holidays
//! "FR"`). Only what a rule needs is here; an unknown region is refused by the
//! checker, never silently ignored.

use chrono::{Datelike, NaiveDate};

/// Regions with a holiday table.
pub const REGIONS: &[&str] = &["FR"];

/// Easter Sunday (Gregorian), by the anonymous Gregorian computus.
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
        .expect("the computus yields a real date")
}

/// The public holidays of `region` in `year`, or `None` for a region without a table.
pub fn holidays(region: &str, year: i32) -> Option<Vec<NaiveDate>> {
    match region {
        "FR" => {
            let fixed = [
                (1, 1),
                (5, 1),
                (5, 8),
                (7, 14),
                (8, 15),
                (11, 1),
                (11, 11),
                (12, 25),
            ];
            let easter = easter(year);
            let mut days: Vec<NaiveDate> = fixed
                .iter()
                .filter_map(|&(m, d)| NaiveDate::from_ymd_opt(year, m, d))
                .collect();
            // Easter Monday, Ascension Thursday, Whit Monday.
            days.extend([1, 39, 50].iter().map(|&n| easter + chrono::Days::new(n)));
            days.sort();
            Some(days)
        }
        _ => None,
    }
}

pub fn is_holiday(region: &str, date: NaiveDate) -> bool {
    holidays(region, date.year()).is_some_and(|d| d.contains(&date))
}
