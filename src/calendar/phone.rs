//! Phone numbers: parsing in E.164 or a region's national format, and the
//! time zones a number's country and area code map to, from libphonenumber's
//! map (`data/phone_timezones.txt`) corrected by a small override table.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono_tz::Tz;
use phonenumber::country::Id as Region;

/// Upstream's map, `PREFIX|ZONE&ZONE…` a line.
const MAP: &str = include_str!("../../data/phone_timezones.txt");

/// Corrections to upstream's map for errors the field knows, longest prefix
/// first wins like the map itself. Each entry says why.
pub const OVERRIDES: &[(&str, &[&str], &str)] = &[
    // Morocco is mapped to Atlantic/Canary, which is an hour off Casablanca
    // in winter (and Morocco suspends its summer time during Ramadan).
    (
        "212",
        &["Africa/Casablanca"],
        "Morocco maps to Atlantic/Canary upstream",
    ),
];

/// Country codes whose mobile numbers are geographic (libphonenumber's
/// GEO_MOBILE_COUNTRIES): elsewhere a mobile number only tells the country.
const GEO_MOBILE_COUNTRIES: &[u16] = &[52, 54, 55, 62, 84, 86];

/// Upstream's map stops at nine digits of prefix.
const LONGEST_PREFIX: usize = 9;

struct ZoneMap {
    by_prefix: HashMap<&'static str, Vec<Tz>>,
}

static ZONES: LazyLock<ZoneMap> = LazyLock::new(|| {
    let mut by_prefix: HashMap<&'static str, Vec<Tz>> = HashMap::new();
    for line in MAP.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((prefix, zones)) = line.split_once('|') else {
            continue;
        };
        // Zones unknown to this build of the IANA database are left out.
        by_prefix.insert(
            prefix,
            zones
                .split('&')
                .filter_map(|z| Tz::from_str(z).ok())
                .collect(),
        );
    }
    for (prefix, zones, _) in OVERRIDES {
        by_prefix.insert(
            prefix,
            zones.iter().filter_map(|z| Tz::from_str(z).ok()).collect(),
        );
    }
    ZoneMap { by_prefix }
});

/// Why a number cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumberError {
    Unreadable,
    NoCountry,
    Invalid,
}

impl std::fmt::Display for NumberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NumberError::Unreadable => "cannot be read as a phone number",
            NumberError::NoCountry => "has no country code and no default region is set",
            NumberError::Invalid => "is not a valid number in its country's numbering plan",
        })
    }
}

/// A valid number, normalised.
#[derive(Clone, Debug)]
pub struct Number {
    pub e164: String,
    /// Its country calling code.
    code: u16,
    /// Fixed line, mobile, …: what validity and the zone lookup both need,
    /// found once (it is most of the cost of reading a number).
    kind: phonenumber::Type,
}

/// Reads a number in E.164 (`+12125550100`) or in the national format of
/// `region` (`(212) 555-0100`, `1-212-555-0100` for "US").
pub fn parse(text: &str, region: Option<Region>) -> Result<Number, NumberError> {
    match north_american(text, region) {
        Some(national) => valid(1, national),
        None => parse_with_crate(text, region),
    }
}

/// The ten digits of a North American number written one of the common
/// ways: `+1` and ten digits, or, for a list of the US or Canada, ten
/// digits or `1` and ten, with spaces, dashes, dots or brackets between
/// them. The crate's parser reads these the same way (a test holds the two
/// to each other on random numbers in every layout), at several times the
/// cost: most of a large list's import.
fn north_american(text: &str, region: Option<Region>) -> Option<[u8; 10]> {
    let text = text.trim();
    let (international, rest) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !international && !matches!(region, Some(Region::US) | Some(Region::CA)) {
        return None;
    }
    let mut digits = [0u8; 11];
    let mut n = 0;
    for b in rest.bytes() {
        match b {
            b'0'..=b'9' if n < digits.len() => {
                digits[n] = b;
                n += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return None,
        }
    }
    let national = match (international, n) {
        (_, 11) if digits[0] == b'1' => &digits[1..11],
        (false, 10) => &digits[..10],
        _ => return None,
    };
    // An area code never starts with 0 or 1; such a number is the crate's.
    if !(b'2'..=b'9').contains(&national[0]) {
        return None;
    }
    national.try_into().ok()
}

/// A number of country `code` and these national digits, if its country's
/// plan knows it.
fn valid(code: u16, national: [u8; 10]) -> Result<Number, NumberError> {
    let national = std::str::from_utf8(&national).map_err(|_| NumberError::Unreadable)?;
    let kind = number_type(code, national);
    if kind == phonenumber::Type::Unknown {
        return Err(NumberError::Invalid);
    }
    Ok(Number {
        e164: format!("+{code}{national}"),
        code,
        kind,
    })
}

/// Reads a number with the `phonenumber` crate's parser.
fn parse_with_crate(text: &str, region: Option<Region>) -> Result<Number, NumberError> {
    let international = text.trim_start().starts_with('+');
    if !international && region.is_none() {
        return Err(NumberError::NoCountry);
    }
    // An international number's own region, found as the crate would find
    // it but with patterns compiled once, spares the crate that search.
    let country = if international {
        own_region(text)
    } else {
        region
    };
    let parsed = phonenumber::parse_with(&phonenumber::metadata::DATABASE, country, text)
        .map_err(|_| NumberError::Unreadable)?;
    // Valid means of a known type in its country's plan (what
    // `phonenumber::is_valid` computes).
    let code = parsed.code().value();
    let with_zeros = parsed.national().to_string();
    let valid_as = number_type(code, &with_zeros);
    if valid_as == phonenumber::Type::Unknown {
        return Err(NumberError::Invalid);
    }
    // The crate's `number_type` (which the zone lookup follows) reads the
    // number without its leading zeros (Italy's 06…); `is_valid` with them.
    let without_zeros = parsed.national().value().to_string();
    let kind = if without_zeros == with_zeros {
        valid_as
    } else {
        number_type(code, &without_zeros)
    };
    // What the crate's E.164 formatter writes, without the national
    // formatting rules it would look up (and not use) on the way.
    let e164 = format!("+{code}{with_zeros}");
    Ok(Number { e164, code, kind })
}

pub fn region(code: &str) -> Option<Region> {
    code.parse().ok()
}

impl Number {
    /// The zones the number maps to, as libphonenumber answers (with the
    /// overrides): the longest listed prefix of its digits; a non-geographic
    /// number (most mobiles) only by its country code.
    pub fn zones(&self) -> Vec<Tz> {
        let digits = self.e164.trim_start_matches('+');
        let country = self.code;
        let geographic = match self.kind {
            phonenumber::Type::FixedLine | phonenumber::Type::FixedLineOrMobile => true,
            phonenumber::Type::Mobile => GEO_MOBILE_COUNTRIES.contains(&country),
            _ => false,
        };
        let longest = if geographic {
            digits.len().min(LONGEST_PREFIX)
        } else {
            country.to_string().len()
        };
        let map = &ZONES.by_prefix;
        (1..=longest)
            .rev()
            .find_map(|n| map.get(&digits[..n]))
            .cloned()
            .unwrap_or_default()
    }

    /// The zones when they say something about the contact: a country-wide
    /// list of many zones (the US as a whole) does not.
    pub fn useful_zones(&self) -> Option<Vec<Tz>> {
        let zones = self.zones();
        (!zones.is_empty() && zones.len() <= MAX_USEFUL_ZONES).then_some(zones)
    }
}

/// More candidate zones than this means the number does not locate the contact.
pub const MAX_USEFUL_ZONES: usize = 4;

/// The region of an international number (`+` then digits, in any layout),
/// as the crate's parser determines it when not given one: the country code
/// is the first one to three digits that name a code, the region the one of
/// its regions that claims the rest. `None` leaves the parser to find it.
fn own_region(text: &str) -> Option<Region> {
    use phonenumber::metadata::DATABASE;
    let digits: String = text
        .chars()
        .skip_while(|c| *c != '+')
        .skip(1)
        .take_while(|c| c.is_ascii_digit() || " -.()".contains(*c))
        .filter(char::is_ascii_digit)
        .collect();
    // Anything else (letters, extensions, a leading zero) is the parser's.
    if digits.starts_with('0') || text.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    let (code, national) = (1..=3.min(digits.len())).find_map(|n| {
        let code: u16 = digits[..n].parse().ok()?;
        DATABASE.by_code(&code).map(|_| (code, &digits[n..]))
    })?;
    region_of(code, national.trim_start_matches('0'))?
        .parse()
        .ok()
}

/// `phonenumber::validator::source_for`, the region half: which region of a
/// country code a national number belongs to.
fn region_of(code: u16, national: &str) -> Option<&'static str> {
    use phonenumber::metadata::DATABASE;
    let regions = DATABASE.region(&code)?;
    if regions.len() == 1 {
        // "001": a non-geographic code, which the parser handles by code.
        return (regions[0] != "001").then_some(regions[0]);
    }
    regions.into_iter().find(|region| {
        DATABASE
            .by_id(*region)
            .is_some_and(|meta| match meta.leading_digits() {
                Some(leading) => PATTERNS.with(|p| p.find_at_start(leading.as_str(), national)),
                None => type_in(meta, national) != phonenumber::Type::Unknown,
            })
    })
}

/// The type of a national number, as `phonenumber::PhoneNumber::number_type`
/// finds it (the same metadata, the same steps: the region among those of
/// the country code, then the first descriptor that matches, in the crate's
/// order), with each pattern compiled once per thread. The crate looks every
/// pattern up by its text in a small shared cache behind a lock, hashing
/// patterns of up to a few thousand characters on every use: that was half
/// the cost of reading a contact list. A test holds the two to the same
/// answers on thousands of numbers of many countries.
pub fn number_type(code: u16, national: &str) -> phonenumber::Type {
    use phonenumber::metadata::DATABASE;
    let Some(regions) = DATABASE.region(&code) else {
        return phonenumber::Type::Unknown;
    };
    if regions.len() == 1 {
        let meta = if regions[0] == "001" {
            DATABASE.by_code(&code).and_then(|m| m.into_iter().next())
        } else {
            DATABASE.by_id(regions[0])
        };
        return meta.map_or(phonenumber::Type::Unknown, |m| type_in(m, national));
    }
    for region in regions {
        let Some(meta) = DATABASE.by_id(region) else {
            continue;
        };
        match meta.leading_digits() {
            Some(leading) => {
                if PATTERNS.with(|p| p.find_at_start(leading.as_str(), national)) {
                    return type_in(meta, national);
                }
            }
            None => {
                let kind = type_in(meta, national);
                if kind != phonenumber::Type::Unknown {
                    return kind;
                }
            }
        }
    }
    phonenumber::Type::Unknown
}

/// `phonenumber::validator::number_type`, step for step.
fn type_in(meta: &'static phonenumber::Metadata, national: &str) -> phonenumber::Type {
    use phonenumber::Type;
    let d = meta.descriptors();
    let matches = |desc: Option<&'static phonenumber::metadata::Descriptor>| {
        desc.is_some_and(|desc| {
            let lengths = desc.possible_length();
            (lengths.is_empty() || lengths.contains(&(national.len() as u16)))
                && PATTERNS.with(|p| p.find_at_start(desc.national_number().as_str(), national))
        })
    };
    if !matches(Some(d.general())) {
        return Type::Unknown;
    }
    for (desc, kind) in [
        (d.premium_rate(), Type::PremiumRate),
        (d.toll_free(), Type::TollFree),
        (d.shared_cost(), Type::SharedCost),
        (d.voip(), Type::Voip),
        (d.personal_number(), Type::PersonalNumber),
        (d.pager(), Type::Pager),
        (d.uan(), Type::Uan),
        (d.voicemail(), Type::Voicemail),
    ] {
        if matches(desc) {
            return kind;
        }
    }
    if matches(d.fixed_line()) {
        let same = d.fixed_line().map(|f| f.national_number().as_str())
            == d.mobile().map(|m| m.national_number().as_str());
        if same || matches(d.mobile()) {
            return Type::FixedLineOrMobile;
        }
        return Type::FixedLine;
    }
    if matches(d.mobile()) {
        return Type::Mobile;
    }
    Type::Unknown
}

/// Compiled patterns of this thread, by the address of their text in the
/// crate's static database (it never moves or changes).
#[derive(Default)]
struct Patterns {
    compiled: std::cell::RefCell<HashMap<usize, Option<regex::Regex>>>,
}

impl Patterns {
    /// Whether the pattern finds a match at the start of `text`, as the
    /// crate's descriptors test (`find(text).start() == 0`). The leftmost
    /// match starts at 0 exactly when some match does, so the pattern is
    /// compiled anchored: a search that does not try every later start is
    /// several times faster on the long patterns of shared country codes.
    fn find_at_start(&self, pattern: &'static str, text: &str) -> bool {
        let mut compiled = self.compiled.borrow_mut();
        let regex = compiled
            .entry(pattern.as_ptr() as usize)
            .or_insert_with(|| {
                // The new line ends a `#` comment, were a pattern to hold one.
                regex::RegexBuilder::new(&format!("^(?:{pattern}\n)"))
                    .ignore_whitespace(true)
                    .build()
                    .ok()
            });
        regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

thread_local! {
    static PATTERNS: Patterns = Patterns::default();
}

/// The country (ISO code, `MA`) of a number in E.164.
pub fn country_of(e164: &str) -> Option<String> {
    own_region(e164).map(|r| r.as_ref().to_string())
}

/// The US state or Canadian province (`FL`, `QC`) of a North American
/// number's area code, from libphonenumber's geocoding data
/// (`data/area_codes.txt`, `scripts/gen_area_codes.py`); `None` for other
/// countries and for area codes that name no one place (toll-free, 500, …).
pub fn us_state(e164: &str) -> Option<&'static str> {
    // By area code, 200-999: read on every contact's run, so an array.
    static TABLE: std::sync::OnceLock<Vec<Option<&'static str>>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = vec![None; 1000];
        for (npa, state) in include_str!("../../data/area_codes.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
        {
            if let Ok(npa) = npa.parse::<usize>() {
                if let Some(slot) = table.get_mut(npa) {
                    *slot = Some(state);
                }
            }
        }
        table
    });
    let npa = e164.strip_prefix("+1")?.get(..3)?;
    if !npa.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    table[npa.parse::<usize>().ok()?]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &Result<Number, NumberError>, b: &Result<Number, NumberError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => a.e164 == b.e164 && a.code == b.code && a.kind == b.kind,
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]
        /// Read without the crate, a North American number reads as the
        /// crate reads it: the same number, type and error, in every layout.
        #[test]
        fn north_american_numbers_read_as_the_crate_reads_them(
            digits in "[0-9]{10}",
            layout in 0usize..8,
            canada in any::<bool>(),
        ) {
            let (a, b, c) = (&digits[..3], &digits[3..6], &digits[6..]);
            let text = match layout {
                0 => format!("+1{digits}"),
                1 => format!("+1 ({a}) {b}-{c}"),
                2 => format!("({a}) {b}-{c}"),
                3 => format!("1-{a}-{b}-{c}"),
                4 => digits.clone(),
                5 => format!("{a}.{b}.{c}"),
                6 => format!(" 1 {a} {b} {c} "),
                _ => format!("+1-{a}-{b}-{c}"),
            };
            let region = Some(if canada { Region::CA } else { Region::US });
            prop_assert!(
                same(&parse(&text, region), &parse_with_crate(&text, region)),
                "{text}: {:?} against the crate's {:?}",
                parse(&text, region),
                parse_with_crate(&text, region)
            );
        }
    }

    #[test]
    fn other_numbers_are_left_to_the_crate() {
        let us = Some(Region::US);
        for text in [
            "+44 20 7946 0958",
            "212-555-0100 x12",
            "+1 212 555 010",
            "0212 555 0100",
            "+1 112 555 0100",
        ] {
            assert_eq!(north_american(text, us), None, "{text}");
        }
        assert_eq!(north_american("(212) 555-0100", Some(Region::FR)), None);
        assert_eq!(
            north_american("(212) 555-0100", us).map(|d| d.to_vec()),
            Some(b"2125550100".to_vec())
        );
    }
}
