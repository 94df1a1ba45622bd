//! Callable time: DST scenarios in several zones, phone numbers to zones,
//! limits, retry forms, properties on random calendars, and vectors from an
//! independent oracle (Python's zoneinfo and phonenumbers).

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use flowc::calendar::limits::Limits;
use flowc::calendar::retry::{self, Retry};
use flowc::calendar::{phone, schedule, Schedule};
use flowc::ir::{self, RetryForm, Window};
use proptest::prelude::*;

fn tz(name: &str) -> Tz {
    Tz::from_str(name).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn local(zone: &str, s: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    tz(zone)
        .from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn week(days: &[usize], windows: &[(u16, u16)]) -> ir::Week {
    std::array::from_fn(|d| {
        if days.contains(&d) {
            windows
                .iter()
                .map(|&(start, end)| Window { start, end })
                .collect()
        } else {
            vec![]
        }
    })
}

fn calendar(weekly: ir::Week, closed: Vec<ir::Closed>) -> ir::Calendar {
    ir::Calendar {
        name: "test".into(),
        weekly,
        closed,
        open: Vec::new(),
    }
}

const WEEKDAYS: &[usize] = &[0, 1, 2, 3, 4];

fn business() -> Schedule {
    Schedule::new(
        Some(&calendar(week(WEEKDAYS, &[(9 * 60, 17 * 60)]), vec![])),
        &[],
    )
}

// ------------------------------------------------------------------ DST

/// One line per zone and change: a window at 09:00 opens at 09:00 local on
/// both sides of the change (the UTC instants differ by the offset change).
const NINE_AM: &[(&str, &str, &str, &str, &str)] = &[
    // zone, Friday before, its 09:00 in UTC, Monday after, its 09:00 in UTC
    (
        "America/New_York",
        "2026-03-06 18:00",
        "2026-03-09T13:00:00Z",
        "2026-03-06T14:00:00Z",
        "spring forward 2026-03-08",
    ),
    (
        "America/New_York",
        "2026-10-30 18:00",
        "2026-11-02T14:00:00Z",
        "2026-10-30T13:00:00Z",
        "fall back 2026-11-01",
    ),
    (
        "Europe/London",
        "2026-03-27 18:00",
        "2026-03-30T08:00:00Z",
        "2026-03-27T09:00:00Z",
        "spring forward 2026-03-29",
    ),
    (
        "Europe/London",
        "2026-10-23 18:00",
        "2026-10-26T09:00:00Z",
        "2026-10-23T08:00:00Z",
        "fall back 2026-10-25",
    ),
    (
        "Europe/Paris",
        "2026-03-27 18:00",
        "2026-03-30T07:00:00Z",
        "2026-03-27T08:00:00Z",
        "spring forward 2026-03-29",
    ),
    (
        "Europe/Paris",
        "2026-10-23 18:00",
        "2026-10-26T08:00:00Z",
        "2026-10-23T07:00:00Z",
        "fall back 2026-10-25",
    ),
    (
        "Australia/Sydney",
        "2026-04-03 18:00",
        "2026-04-05T23:00:00Z",
        "2026-04-02T22:00:00Z",
        "fall back 2026-04-05",
    ),
    (
        "Australia/Sydney",
        "2026-10-02 18:00",
        "2026-10-04T22:00:00Z",
        "2026-10-01T23:00:00Z",
        "spring forward 2026-10-04",
    ),
    (
        "America/Phoenix",
        "2026-03-06 18:00",
        "2026-03-09T16:00:00Z",
        "2026-03-06T16:00:00Z",
        "no DST",
    ),
    (
        "Asia/Tokyo",
        "2026-03-06 18:00",
        "2026-03-09T00:00:00Z",
        "2026-03-06T00:00:00Z",
        "no DST",
    ),
];

#[test]
fn nine_am_is_local_on_both_sides_of_a_change() {
    let s = business();
    for (zone, friday_evening, monday_nine, friday_nine, what) in NINE_AM {
        let z = tz(zone);
        let next = s.next_callable(local(zone, friday_evening), &[z]).unwrap();
        assert_eq!(
            next,
            utc(monday_nine),
            "{zone} {what}: next callable after Friday evening"
        );
        let friday_morning = local(zone, &friday_evening.replace("18:00", "07:00"));
        assert_eq!(
            s.next_callable(friday_morning, &[z]).unwrap(),
            utc(friday_nine),
            "{zone} {what}: Friday 09:00"
        );
    }
}

#[test]
fn durations_are_elapsed_time_across_a_change() {
    // `retry after 25h` from Saturday 10:00 in New York across spring forward
    // lands at 12:00 local on Sunday (an hour of the night does not exist).
    let z = tz("America/New_York");
    let all_day = Schedule::new(None, &[]);
    let r = Retry {
        ended_at: local("America/New_York", "2026-03-07 10:00"),
        nth: 1,
        jitter_percent: 0.0,
        key: "x",
        min_gap: Duration::zero(),
        flow_zone: z,
    };
    let form = RetryForm::After {
        delays_seconds: vec![25 * 3600],
    };
    let at = retry::next_attempt(&form, &r, &[z], &all_day, &Limits::default(), &[]).unwrap();
    assert_eq!(at, local("America/New_York", "2026-03-08 12:00"));
    // Across fall back, the same 25h lands at 10:00 local.
    let r = Retry {
        ended_at: local("America/New_York", "2026-10-31 10:00"),
        ..r
    };
    let at = retry::next_attempt(&form, &r, &[z], &all_day, &Limits::default(), &[]).unwrap();
    assert_eq!(at, local("America/New_York", "2026-11-01 10:00"));
}

#[test]
fn nonexistent_local_times_move_forward_and_ambiguous_take_the_earlier() {
    let z = tz("America/New_York");
    // 02:30 does not exist on 2026-03-08: it moves to 03:00 EDT (07:00 UTC).
    assert_eq!(
        schedule::instant(z, NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(), 150),
        utc("2026-03-08T07:00:00Z")
    );
    // 01:30 happens twice on 2026-11-01: the earlier is 01:30 EDT (05:30 UTC).
    assert_eq!(
        schedule::instant(z, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), 90),
        utc("2026-11-01T05:30:00Z")
    );
    // A window opening at 02:30 on the spring-forward Sunday opens at 03:00.
    let s = Schedule::new(Some(&calendar(week(&[6], &[(150, 240)]), vec![])), &[]);
    assert_eq!(
        s.next_callable(utc("2026-03-08T05:00:00Z"), &[z]).unwrap(),
        utc("2026-03-08T07:00:00Z")
    );
}

#[test]
fn several_zones_must_all_be_callable() {
    // 09:00-17:00 in both New York and Los Angeles: 12:00-17:00 Eastern.
    let s = business();
    let zones = [tz("America/New_York"), tz("America/Los_Angeles")];
    let from = local("America/New_York", "2026-12-01 08:00");
    assert_eq!(
        s.next_callable(from, &zones).unwrap(),
        local("America/New_York", "2026-12-01 12:00")
    );
    let stretches = s.stretches(from, from + Duration::hours(24), &zones);
    assert_eq!(stretches.len(), 1);
    assert_eq!(
        stretches[0].end,
        local("America/New_York", "2026-12-01 17:00")
    );
    // Zones that never share a callable minute: nothing.
    let apart = [tz("America/New_York"), tz("Asia/Tokyo")];
    assert_eq!(s.next_callable(from, &apart), None);
}

#[test]
fn closed_days_and_holidays_are_skipped() {
    let closed = vec![ir::Closed {
        date: NaiveDate::from_ymd_opt(2026, 12, 25).unwrap(),
        window: None,
        label: None,
    }];
    let s = Schedule::new(
        Some(&calendar(week(WEEKDAYS, &[(9 * 60, 17 * 60)]), closed)),
        &[],
    );
    let z = tz("America/New_York");
    assert_eq!(
        s.next_callable(local("America/New_York", "2026-12-24 18:00"), &[z])
            .unwrap(),
        local("America/New_York", "2026-12-28 09:00")
    );
    // The france preset: Monday to Friday 10:00-13:00 and 14:00-20:00, no public holidays.
    let france = ir::Policy {
        name: "france".into(),
        preset: true,
        allowed: Some(week(WEEKDAYS, &[(600, 780), (840, 1200)])),
        no_holidays: vec!["FR".into()],
        ..Default::default()
    };
    let s = Schedule::new(None, &[&france]);
    let paris = tz("Europe/Paris");
    // 2027-05-06 is Ascension Thursday (Easter + 39 days); 2027-05-07 a Friday.
    assert_eq!(
        s.next_callable(local("Europe/Paris", "2027-05-05 20:30"), &[paris])
            .unwrap(),
        local("Europe/Paris", "2027-05-07 10:00")
    );
    assert_eq!(
        s.next_callable(local("Europe/Paris", "2027-05-07 13:10"), &[paris])
            .unwrap(),
        local("Europe/Paris", "2027-05-07 14:00")
    );
    assert_eq!(
        flowc::calendar::holidays::easter(2027),
        NaiveDate::from_ymd_opt(2027, 3, 28).unwrap()
    );
}

#[test]
fn quiet_hours_wrap_midnight() {
    let tcpa = ir::Policy {
        name: "tcpa".into(),
        quiet_hours: vec![Window {
            start: 21 * 60,
            end: 8 * 60,
        }],
        ..Default::default()
    };
    let s = Schedule::new(None, &[&tcpa]);
    let z = tz("America/Chicago");
    assert_eq!(
        s.next_callable(local("America/Chicago", "2026-12-01 21:00"), &[z])
            .unwrap(),
        local("America/Chicago", "2026-12-02 08:00")
    );
    assert!(s.is_callable(local("America/Chicago", "2026-12-01 20:59"), &[z]));
}

// ------------------------------------------------------------------ retry forms and limits

fn at(s: &str) -> DateTime<Utc> {
    local("America/New_York", s)
}

#[test]
fn every_retry_form() {
    let z = [tz("America/New_York")];
    let s = business();
    let none = Limits::default();
    let r = |ended: &str, nth: u32| Retry {
        ended_at: at(ended),
        nth,
        jitter_percent: 0.0,
        key: "+12125550100",
        min_gap: Duration::minutes(15),
        flow_zone: tz("America/New_York"),
    };
    let after = RetryForm::After {
        delays_seconds: vec![1800, 3600, 7200],
    };
    let cases: Vec<(RetryForm, Retry<'_>, &str)> = vec![
        (after.clone(), r("2026-12-01 10:00", 1), "2026-12-01 10:30"),
        (after.clone(), r("2026-12-01 10:00", 2), "2026-12-01 11:00"),
        (after.clone(), r("2026-12-01 10:00", 5), "2026-12-01 12:00"),
        // Past the calendar's end: the next morning.
        (after, r("2026-12-01 16:45", 1), "2026-12-02 09:00"),
        (
            RetryForm::Backoff {
                first_seconds: 900,
                factor: 2.0,
                cap_seconds: Some(4 * 3600),
            },
            r("2026-12-01 09:00", 3),
            "2026-12-01 10:00",
        ),
        (
            RetryForm::Backoff {
                first_seconds: 900,
                factor: 2.0,
                cap_seconds: Some(4 * 3600),
            },
            r("2026-12-01 09:00", 9),
            "2026-12-01 13:00",
        ),
        (
            RetryForm::At {
                times: vec![600, 840, 1080],
            },
            r("2026-12-01 09:50", 1),
            "2026-12-01 14:00",
        ),
        (
            RetryForm::At {
                times: vec![600, 840, 1080],
            },
            r("2026-12-01 15:00", 1),
            "2026-12-02 10:00",
        ),
        (
            RetryForm::NextDayAt {
                times: vec![600, 960],
            },
            r("2026-12-04 11:00", 1),
            "2026-12-07 10:00",
        ),
        (
            RetryForm::On {
                instants: vec![ir::LocalDateTime {
                    local: "2026-12-10T10:00:00".parse().unwrap(),
                    zone: None,
                }],
            },
            r("2026-12-01 11:00", 1),
            "2026-12-10 10:00",
        ),
    ];
    for (form, retry, expected) in cases {
        let got = retry::next_attempt(&form, &retry, &z, &s, &none, &[]).unwrap();
        assert_eq!(got, at(expected), "{form:?} after {}", retry.ended_at);
    }
}

#[test]
fn jitter_is_deterministic_and_bounded() {
    let a = retry::jitter_fraction("+12125550100", 2);
    assert_eq!(a, retry::jitter_fraction("+12125550100", 2));
    assert_ne!(a, retry::jitter_fraction("+12125550101", 2));
    let s = Schedule::new(None, &[]);
    let z = [tz("UTC")];
    let r = Retry {
        ended_at: utc("2026-12-01T10:00:00Z"),
        nth: 1,
        jitter_percent: 10.0,
        key: "k",
        min_gap: Duration::zero(),
        flow_zone: Tz::UTC,
    };
    let got = retry::requested(
        &RetryForm::After {
            delays_seconds: vec![3600],
        },
        &r,
        &z,
        &s,
    )
    .unwrap();
    assert!(
        got >= utc("2026-12-01T11:00:00Z") && got < utc("2026-12-01T11:06:00Z"),
        "{got}"
    );
}

#[test]
fn limits_per_day_rolling_and_gap() {
    let z = tz("America/New_York");
    let history = [
        at("2026-12-01 09:00"),
        at("2026-12-01 10:00"),
        at("2026-12-01 11:00"),
    ];
    let gap = Limits {
        min_gap: Duration::hours(2),
        ..Default::default()
    };
    assert_eq!(
        gap.earliest(at("2026-12-01 11:30"), &history, z),
        at("2026-12-01 13:00")
    );
    let per_day = Limits {
        per_day: Some(3),
        ..Default::default()
    };
    assert_eq!(
        per_day.earliest(at("2026-12-01 12:00"), &history, z),
        at("2026-12-02 00:00")
    );
    let rolling = Limits {
        rolling: vec![ir::RollingLimit {
            max: 3,
            per_seconds: 86_400,
        }],
        ..Default::default()
    };
    assert_eq!(
        rolling.earliest(at("2026-12-01 12:00"), &history, z),
        at("2026-12-02 09:00")
    );
    let weekly = Limits {
        rolling: vec![ir::RollingLimit {
            max: 2,
            per_seconds: 7 * 86_400,
        }],
        ..Default::default()
    };
    assert_eq!(
        weekly.earliest(at("2026-12-01 12:00"), &history, z),
        at("2026-12-08 10:00")
    );
    // The limits and the calendar together: 3 per 24h, then the calendar opens at 09:00.
    let s = business();
    let next = retry::settle(at("2026-12-01 12:00"), &[z], &s, &rolling, &history).unwrap();
    assert_eq!(next, at("2026-12-02 09:00"));
}

// ------------------------------------------------------------------ phone numbers

#[test]
fn numbers_map_to_zones_with_the_moroccan_correction() {
    let us = phone::region("US");
    for (text, e164, zones) in [
        ("(212) 555-0100", "+12125550100", vec!["America/New_York"]),
        (
            "1-310-555-0100",
            "+13105550100",
            vec!["America/Los_Angeles"],
        ),
        ("+12125550100", "+12125550100", vec!["America/New_York"]),
        (
            "+16055550100",
            "+16055550100",
            vec!["America/Denver", "America/North_Dakota/Center"],
        ),
        ("+212661234567", "+212661234567", vec!["Africa/Casablanca"]),
    ] {
        let n = phone::parse(text, us).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(n.e164, e164);
        let names: Vec<&str> = n.zones().iter().map(|z| z.name()).collect();
        assert_eq!(names, zones, "{text}");
    }
    assert_eq!(
        phone::parse("555-0100", None).unwrap_err(),
        phone::NumberError::NoCountry
    );
    assert_eq!(
        phone::parse("+1212555", None).unwrap_err(),
        phone::NumberError::Invalid
    );
    assert!(phone::parse("not a number", us).is_err());
    // A country-wide list (+1 as a whole) does not locate anyone.
    let toll_free = phone::parse("+18005550100", None).unwrap();
    assert_eq!(toll_free.useful_zones(), None);
}

#[test]
fn zones_resolve_from_the_flow_sources_in_order() {
    use flowc::calendar::zone::{resolve, ZoneError};
    let sources = vec![
        ir::ZoneSource::Field("timezone".into()),
        ir::ZoneSource::Phone,
        ir::ZoneSource::Zone("America/Chicago".into()),
    ];
    let number = phone::parse("+13105550100", None).unwrap();
    let with_field = resolve(&sources, |_| Some("Europe/Paris"), Some(&number)).unwrap();
    assert_eq!(with_field, vec![tz("Europe/Paris")]);
    let by_phone = resolve(&sources, |_| None, Some(&number)).unwrap();
    assert_eq!(by_phone, vec![tz("America/Los_Angeles")]);
    let fallback = resolve(&sources, |_| Some(""), None).unwrap();
    assert_eq!(fallback, vec![tz("America/Chicago")]);
    assert!(matches!(
        resolve(&sources, |_| Some("Mars/Base"), None),
        Err(ZoneError::UnknownZone { .. })
    ));
    assert_eq!(
        resolve(&sources[..2], |_| None, None),
        Err(ZoneError::Undetermined)
    );
}

// ------------------------------------------------------------------ the oracle

#[derive(serde::Deserialize)]
struct Vectors<T> {
    vectors: Vec<T>,
}

#[derive(serde::Deserialize)]
struct NextCallable {
    zones: Vec<String>,
    weekly: Vec<Vec<(u16, u16)>>,
    closed: Vec<NaiveDate>,
    from: String,
    expected: String,
}

#[test]
fn next_callable_matches_the_zoneinfo_oracle() {
    let text =
        std::fs::read_to_string(crate::root().join("tests/vectors/next_callable.json")).unwrap();
    let vectors: Vectors<NextCallable> = serde_json::from_str(&text).unwrap();
    assert!(vectors.vectors.len() > 300);
    let mut failures = Vec::new();
    for v in &vectors.vectors {
        let weekly: ir::Week = std::array::from_fn(|d| {
            v.weekly[d]
                .iter()
                .map(|&(start, end)| Window { start, end })
                .collect()
        });
        let closed = v
            .closed
            .iter()
            .map(|d| ir::Closed {
                date: *d,
                window: None,
                label: None,
            })
            .collect();
        let s = Schedule::new(Some(&calendar(weekly, closed)), &[]);
        let zones: Vec<Tz> = v.zones.iter().map(|z| tz(z)).collect();
        let got = s.next_callable(utc(&v.from), &zones);
        if got != Some(utc(&v.expected)) {
            failures.push(format!(
                "{:?} from {}: expected {}, got {:?}",
                v.zones, v.from, v.expected, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        vectors.vectors.len(),
        failures.join("\n")
    );
}

#[derive(serde::Deserialize)]
struct PhoneVector {
    number: String,
    region: Option<String>,
    e164: Option<String>,
    zones: Vec<String>,
}

#[test]
fn phone_zones_match_the_libphonenumber_oracle() {
    let text =
        std::fs::read_to_string(crate::root().join("tests/vectors/phone_zones.json")).unwrap();
    let vectors: Vectors<PhoneVector> = serde_json::from_str(&text).unwrap();
    for v in &vectors.vectors {
        let n = phone::parse(&v.number, v.region.as_deref().and_then(phone::region)).unwrap();
        if let Some(e164) = &v.e164 {
            assert_eq!(&n.e164, e164);
        }
        // Where upstream's answer is known wrong, the expected zone is
        // written here, with the reason (not read from the table under test):
        // Morocco (+212) is mapped to Atlantic/Canary upstream, an hour off
        // Casablanca in winter; Moroccan law sets Africa/Casablanca.
        let expected: Vec<String> = if n.e164.starts_with("+212") {
            assert_eq!(
                v.zones,
                vec!["Atlantic/Canary".to_string()],
                "upstream's answer for {} changed: review the override",
                v.number
            );
            vec!["Africa/Casablanca".to_string()]
        } else {
            v.zones.clone()
        };
        let got: Vec<String> = n.zones().iter().map(|z| z.name().to_string()).collect();
        assert_eq!(got, expected, "{}", v.number);
    }
}

// ------------------------------------------------------------------ properties

const PROPERTY_ZONES: &[&str] = &[
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Australia/Sydney",
    "Asia/Tokyo",
    "America/Sao_Paulo",
    "Pacific/Auckland",
    "Africa/Casablanca",
    "Asia/Kolkata",
];

fn arb_week() -> impl Strategy<Value = ir::Week> {
    let day = prop::collection::vec((0u16..48, 1u16..20), 0..3).prop_map(|ws| {
        schedule::merge(
            ws.into_iter()
                .map(|(s, len)| Window {
                    start: s * 30,
                    end: (s * 30 + len * 30).min(1440),
                })
                .collect(),
        )
    });
    prop::array::uniform7(day)
        .prop_filter("some callable time", |w| w.iter().any(|d| !d.is_empty()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn next_callable_is_callable_not_earlier_and_first(
        weekly in arb_week(),
        zone in 0..PROPERTY_ZONES.len(),
        minutes in 0i64..(5 * 365 * 24 * 60),
        quiet in any::<bool>(),
    ) {
        let quiet_policy = ir::Policy { name: "q".into(), quiet_hours: vec![Window { start: 21 * 60, end: 8 * 60 }], ..Default::default() };
        let policies: Vec<&ir::Policy> = if quiet { vec![&quiet_policy] } else { vec![] };
        let s = Schedule::new(Some(&calendar(weekly, vec![])), &policies);
        let z = tz(PROPERTY_ZONES[zone]);
        let from = utc("2026-01-01T00:00:00Z") + Duration::minutes(minutes) + Duration::seconds(minutes % 60);
        let answer = s.next_callable(from, &[z]);
        if answer.is_none() {
            // No answer only when no minute of the horizon is callable:
            // every quarter hour of the first weeks, and the week's windows
            // themselves, say so (the weekly windows repeat).
            let mut t = from;
            while t < from + Duration::days(15) {
                prop_assert!(!s.is_callable(t, &[z]), "callable at {t}, yet no answer");
                t += Duration::minutes(15);
            }
            prop_assert!(quiet, "a week with windows and no quiet hours always has an answer");
        }
        if let Some(next) = answer {
            prop_assert!(next >= from);
            prop_assert!(s.is_callable(next, &[z]));
            // Nothing callable lies between: check every minute boundary.
            let mut t = from;
            while t < next {
                prop_assert!(!s.is_callable(t, &[z]), "callable at {t} before {next}");
                t = (t + Duration::minutes(1)).with_second0();
            }
            // Never inside quiet hours, in local time.
            if quiet {
                let local = next.with_timezone(&z);
                let m = chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local);
                prop_assert!((8 * 60..21 * 60).contains(&m), "{local} is in quiet hours");
            }
        }
    }

    /// The engine places a call planned for now without settling it again
    /// (`Run::reschedule`): an instant settled once must settle to itself,
    /// under any calendar, zones, limits and past attempts.
    #[test]
    fn a_settled_instant_settles_to_itself(
        weekly in arb_week(),
        zones in prop::collection::vec(0..PROPERTY_ZONES.len(), 1..3),
        minutes in 0i64..(2 * 365 * 24 * 60),
        past in prop::collection::vec(0i64..(3 * 24 * 60), 0..8),
        gap_minutes in 0i64..600,
        per_day in prop::option::of(1u32..4),
        rolling in prop::option::of((1u32..5, 1u64..(8 * 86_400))),
    ) {
        let quiet = ir::Policy { name: "q".into(), quiet_hours: vec![Window { start: 21 * 60, end: 8 * 60 }], ..Default::default() };
        let s = Schedule::new(Some(&calendar(weekly, vec![])), &[&quiet]);
        let zones: Vec<Tz> = zones.into_iter().map(|z| tz(PROPERTY_ZONES[z])).collect();
        let from = utc("2026-01-01T00:00:00Z") + Duration::minutes(minutes) + Duration::seconds(minutes % 60);
        let mut history: Vec<DateTime<Utc>> = past.iter().map(|m| from - Duration::minutes(*m)).collect();
        history.sort();
        let limits = Limits {
            min_gap: Duration::minutes(gap_minutes),
            per_day,
            rolling: rolling
                .map(|(max, per_seconds)| vec![ir::RollingLimit { max, per_seconds }])
                .unwrap_or_default(),
        };
        if let Some(at) = retry::settle(from, &zones, &s, &limits, &history) {
            prop_assert!(at >= from);
            prop_assert_eq!(retry::settle(at, &zones, &s, &limits, &history), Some(at));
        }
    }

    #[test]
    fn stretches_are_callable_disjoint_and_outside_quiet_hours(weekly in arb_week(), zone in 0..PROPERTY_ZONES.len(), days in 0i64..1500) {
        let quiet = ir::Policy { name: "q".into(), quiet_hours: vec![Window { start: 21 * 60, end: 8 * 60 }], ..Default::default() };
        let s = Schedule::new(Some(&calendar(weekly, vec![])), &[&quiet]);
        let z = tz(PROPERTY_ZONES[zone]);
        let from = utc("2026-01-01T00:00:00Z") + Duration::days(days);
        let stretches = s.stretches(from, from + Duration::days(7), &[z]);
        for pair in stretches.windows(2) {
            prop_assert!(pair[0].end < pair[1].start);
        }
        for st in &stretches {
            prop_assert!(s.is_callable(st.start, &[z]));
            prop_assert!(s.is_callable(st.end - Duration::minutes(1), &[z]));
            // Every quarter hour inside a stretch is outside the quiet hours, in local time.
            let mut t = st.start;
            while t < st.end {
                let local = t.with_timezone(&z);
                let m = chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local);
                prop_assert!((8 * 60..21 * 60).contains(&m), "{local} lies in quiet hours");
                t += Duration::minutes(15);
            }
        }
    }
}

trait Second0 {
    fn with_second0(self) -> Self;
}

impl Second0 for DateTime<Utc> {
    fn with_second0(self) -> Self {
        use chrono::Timelike;
        self.with_second(0).unwrap()
    }
}

/// `phone::number_type` compiles the crate's patterns once; it must answer
/// as `phonenumber` does: on every example number of every region and type
/// in the metadata, and on variants of them (a digit changed, one more, one
/// less).
#[test]
fn number_types_match_the_phonenumber_crate() {
    use phonenumber::metadata::DATABASE;
    let mut checked = 0;
    for meta in DATABASE.iter() {
        let d = meta.descriptors();
        let descs = [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        for example in descs.into_iter().flatten().filter_map(|d| d.example()) {
            let mut variants = vec![example.to_string(), format!("{example}5")];
            if example.len() > 1 {
                variants.push(example[..example.len() - 1].to_string());
                let last = example.as_bytes()[example.len() - 1] - b'0';
                variants.push(format!(
                    "{}{}",
                    &example[..example.len() - 1],
                    (last + 3) % 10
                ));
            }
            for national in variants {
                let text = format!("+{}{national}", meta.country_code());
                // Reading an international number the fast way gives the
                // crate's answer, whatever the layout.
                let split = national.len().min(3);
                for layout in [
                    text.clone(),
                    format!("+{} {national}", meta.country_code()),
                    format!(
                        "+{} ({}) {}",
                        meta.country_code(),
                        &national[..split],
                        &national[split..]
                    ),
                    format!(
                        "+{}-{}-{}",
                        meta.country_code(),
                        &national[..split],
                        &national[split..]
                    ),
                ] {
                    let crate_says = phonenumber::parse(None, &layout)
                        .ok()
                        .filter(phonenumber::is_valid)
                        .map(|p| p.format().mode(phonenumber::Mode::E164).to_string());
                    let we_say = flowc::calendar::phone::parse(&layout, None)
                        .ok()
                        .map(|n| n.e164);
                    assert_eq!(we_say, crate_says, "{layout}");
                }
                let Ok(parsed) = phonenumber::parse(None, &text) else {
                    continue;
                };
                let ours = flowc::calendar::phone::number_type(
                    parsed.code().value(),
                    &parsed.national().value().to_string(),
                );
                assert_eq!(ours, parsed.number_type(&DATABASE), "{text}");
                checked += 1;
            }
        }
    }
    assert!(checked > 3000, "only {checked} numbers");
}

/// Every public holiday of ten countries and four subdivisions over
/// 2024-2035, as the `holidays` package's own API lists them
/// (`scripts/oracle_holidays.py`), against the shipped table.
#[test]
fn holidays_match_the_holidays_package() {
    let text = std::fs::read_to_string(crate::root().join("tests/vectors/holidays.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 14 * 12);
    for v in vectors {
        let region = v["region"].as_str().unwrap();
        let year = v["year"].as_i64().unwrap() as i32;
        let expected: Vec<String> = v["dates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        let got: Vec<String> = flowc::calendar::holidays::holidays(region, year)
            .unwrap_or_else(|| panic!("no table for {region}"))
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(got, expected, "{region} {year}");
    }
}

/// `no holidays` takes any country or subdivision of the table, and a
/// schedule under it never opens on one of its holidays; an unknown code
/// is an error with the way to write it.
#[test]
fn any_country_and_subdivision_closes_its_holidays() {
    let flow = |region: &str| {
        format!(
            "contact {{ phone: phone }}\ncalendar office {{\n  hours daily 09:00-17:00\n}}\ncompliance local {{\n  no holidays \"{region}\"\n}}\nflow demo {{\n  calendar office\n  timezone \"Africa/Casablanca\"\n  compliance local\n  step call {{\n    dial contact.phone\n    on other -> end failed\n  }}\n}}\n"
        )
    };
    for region in ["MA", "US-CA", "DE-BY", "JP"] {
        let c = flowc::check::check_source("h.flow", &flow(region));
        assert!(c.diagnostics.is_empty(), "{region}: {:?}", c.diagnostics);
    }
    for (region, help) in [
        ("ma", "write it in capitals: \"MA\""),
        ("U-CA", "did you mean \"US-CA\"?"),
    ] {
        let c = flowc::check::check_source("h.flow", &flow(region));
        assert_eq!(c.diagnostics.len(), 1, "{region}");
        assert_eq!(c.diagnostics[0].help.as_deref(), Some(help));
    }
    // Morocco: the Throne Day (30 July) and Eid al-Adha 2026 (as the table
    // estimates it) are closed; the next morning is callable.
    let c = flowc::check::check_source("h.flow", &flow("MA"));
    let program = c.program.unwrap();
    let f = program.flow.as_ref().unwrap();
    let policies: Vec<&ir::Policy> = f.compliance.policies.iter().collect();
    let s = Schedule::new(Some(&f.calendars[0]), &policies);
    let z = tz("Africa/Casablanca");
    let days = flowc::calendar::holidays::holidays("MA", 2026).unwrap();
    assert!(days.contains(&chrono::NaiveDate::from_ymd_opt(2026, 7, 30).unwrap()));
    for day in days {
        let noon = z
            .from_local_datetime(&day.and_hms_opt(12, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert!(!s.is_callable(noon, &[z]), "{day} is a holiday");
    }
}

/// A North American number's state or province comes from its area code;
/// toll-free and other numbers get none.
#[test]
fn area_codes_give_states() {
    use flowc::calendar::phone::us_state;
    for (number, state) in [
        ("+13055550100", Some("FL")),
        ("+14055550100", Some("OK")),
        ("+14105550100", Some("MD")),
        ("+12125550100", Some("NY")),
        ("+15145550100", Some("QC")),
        ("+18005550100", None),
        ("+33142000000", None),
    ] {
        assert_eq!(us_state(number), state, "{number}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Under `no holidays` of a contact's country, the next callable instant
    /// never falls on one of its holidays (local date), over ten countries
    /// and 2026-2030.
    #[test]
    fn no_dial_on_a_holiday_of_the_country(
        pick in 0usize..10,
        minutes in 0i64..(5 * 365 * 24 * 60),
    ) {
        let (region, zone) = [
            ("FR", "Europe/Paris"), ("MA", "Africa/Casablanca"), ("US", "America/New_York"),
            ("GB", "Europe/London"), ("DE", "Europe/Berlin"), ("ES", "Europe/Madrid"),
            ("CA", "America/Toronto"), ("BR", "America/Sao_Paulo"), ("IN", "Asia/Kolkata"),
            ("JP", "Asia/Tokyo"),
        ][pick];
        let z = tz(zone);
        let weekly: ir::Week = std::array::from_fn(|_| vec![Window { start: 9 * 60, end: 17 * 60 }]);
        let policy = ir::Policy { name: "h".into(), no_holidays: vec![region.into()], ..Default::default() };
        let s = Schedule::new(Some(&calendar(weekly, vec![])), &[&policy]);
        let from = utc("2026-01-01T00:00:00Z") + Duration::minutes(minutes);
        let next = s.next_callable(from, &[z]).expect("a weekday window is always near");
        let date = next.with_timezone(&z).date_naive();
        let days = flowc::calendar::holidays::holidays(region, chrono::Datelike::year(&date)).unwrap();
        prop_assert!(!days.contains(&date), "{region}: {next} is on the holiday {date}");
        // And nothing callable before it: the day before `next`, if a holiday, was skipped.
        prop_assert!(next >= from);
    }
}

/// A flow and its calendar file, checked from memory.
fn with_ics(ics: &str) -> flowc::check::Compilation {
    let flow = r#"contact { phone: phone }

calendar office from "closures.ics" {
  hours mon-fri 09:00-18:00
}

flow demo {
  timezone phone, "Europe/Paris"
  calendar office
  step call {
    dial contact.phone
    on answered -> end completed
    on other -> end failed
  }
}
"#;
    let mut loader = flowc::check::MemoryLoader::default();
    loader
        .files
        .insert("dir/demo.flow".into(), flow.to_string());
    loader
        .files
        .insert("dir/closures.ics".into(), ics.to_string());
    flowc::check::check(std::path::Path::new("dir/demo.flow"), &loader).unwrap()
}

/// A closed date, its window and its label.
type ClosedDay = (NaiveDate, Option<(u16, u16)>, Option<String>);

fn closed_of(c: &flowc::check::Compilation) -> Vec<ClosedDay> {
    let program = c.program.as_ref().expect("the flow checks");
    let flow = program.flow.as_ref().unwrap();
    flow.calendars[0]
        .closed
        .iter()
        .map(|c| (c.date, c.window.map(|w| (w.start, w.end)), c.label.clone()))
        .collect()
}

#[test]
fn calendar_files_close_their_events() {
    let ics = "BEGIN:VCALENDAR\r\n\
VERSION:2.0\r\n\
X-WR-TIMEZONE:Europe/Paris\r\n\
BEGIN:VEVENT\r\n\
DTSTART;VALUE=DATE:20241225\r\n\
DTEND;VALUE=DATE:20241227\r\n\
RRULE:FREQ=YEARLY\r\n\
EXDATE;VALUE=DATE:20281225\r\n\
SUMMARY:Christmas\\, and the\r\n  day after\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
DTSTART:20260709T130000Z\r\n\
DURATION:PT2H30M\r\n\
SUMMARY:Summer all-hands\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
DTSTART;TZID=Europe/Paris:20261230T200000\r\n\
DTEND;TZID=Europe/Paris:20261231T100000\r\n\
SUMMARY:Inventory\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
DTSTART;VALUE=DATE:20260101\r\n\
RRULE:FREQ=MONTHLY;BYDAY=1MO;COUNT=3\r\n\
SUMMARY:First Monday\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n";
    let c = with_ics(ics);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let closed = closed_of(&c);
    let d = |s: &str| NaiveDate::from_str(s).unwrap();
    let has = |date: &str, window: Option<(u16, u16)>| {
        closed
            .iter()
            .any(|(cd, w, _)| *cd == d(date) && *w == window)
    };
    // The yearly event: two whole days a year, 2024 to 2035, less 2028.
    let christmas: Vec<_> = closed
        .iter()
        .filter(|(_, _, l)| l.as_deref() == Some("Christmas, and the day after"))
        .collect();
    assert_eq!(christmas.len(), 2 * 11, "{christmas:?}");
    assert!(has("2035-12-26", None) && has("2024-12-25", None));
    assert!(!has("2028-12-25", None) && !has("2028-12-26", None));
    // 13:00 UTC in July is 15:00 in Paris (summer time), for two and a half hours.
    assert!(has("2026-07-09", Some((900, 1050))), "{closed:?}");
    // Across midnight: the evening and the morning.
    assert!(has("2026-12-30", Some((1200, 1440))) && has("2026-12-31", Some((0, 600))));
    // A recurring all-day event with a count: the start, then the rule's instances.
    let mondays: Vec<NaiveDate> = closed
        .iter()
        .filter(|(_, _, l)| l.as_deref() == Some("First Monday"))
        .map(|(d, _, _)| *d)
        .collect();
    assert_eq!(
        mondays,
        [
            d("2026-01-01"),
            d("2026-01-05"),
            d("2026-02-02"),
            d("2026-03-02")
        ]
    );
}

#[test]
fn a_calendar_file_error_points_at_its_line() {
    let ics = "BEGIN:VCALENDAR\n\
BEGIN:VEVENT\n\
DTSTART;VALUE=DATE:20261224\n\
END:VEVENT\n\
BEGIN:VEVENT\n\
DTSTART:20261224T090000\n\
DTEND:tomorrow\n\
END:VEVENT\n\
END:VCALENDAR\n";
    let c = with_ics(ics);
    assert!(c.program.is_none());
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "E0218")
        .expect("E0218");
    let span = d.primary_span().unwrap();
    let file = c.sources.get(span.file);
    assert!(file.path.ends_with("closures.ics"));
    assert_eq!(file.line_col(span.start as usize).line, 7);
    assert!(d
        .labels
        .iter()
        .any(|l| l.message.contains("`tomorrow` is not a date")));

    // A file cut short names the BEGIN that is never closed.
    let c = with_ics("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\n");
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "E0218")
        .unwrap();
    let span = d.primary_span().unwrap();
    assert_eq!(
        c.sources.get(span.file).line_col(span.start as usize).line,
        2
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever the text, reading it as a calendar file never panics, and
    /// every position it reports lies in the text.
    #[test]
    fn any_text_reads_as_a_calendar_file_without_panicking(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("BEGIN:VCALENDAR".to_string()),
                Just("END:VCALENDAR".to_string()),
                Just("BEGIN:VEVENT".to_string()),
                Just("END:VEVENT".to_string()),
                Just("DTSTART;VALUE=DATE:20261224".to_string()),
                Just("DTSTART:20261224T090000Z".to_string()),
                Just("DTEND:20261224T083000".to_string()),
                Just("DURATION:P1W".to_string()),
                Just("DURATION:P1Y".to_string()),
                Just("RRULE:FREQ=DAILY".to_string()),
                Just("RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30".to_string()),
                Just("EXDATE:20261225".to_string()),
                Just(" folded".to_string()),
                Just("X-WR-TIMEZONE:Mars/Base".to_string()),
                "[ -~]{0,30}",
                "\\PC{0,12}",
            ],
            0..24,
        ),
        crlf in any::<bool>(),
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let read = flowc::calendar::ics::read(&text);
        for p in &read.problems {
            prop_assert!(p.at.start <= p.at.end && p.at.end <= text.len());
            prop_assert!(text.is_char_boundary(p.at.start) && text.is_char_boundary(p.at.end));
        }
        for c in &read.closures {
            prop_assert!(c.window.is_none_or(|(a, b)| a < b && b <= 1440));
        }
    }
}
