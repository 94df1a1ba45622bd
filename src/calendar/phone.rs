//! Phone numbers: parsing in E.164 or a region's national format, and the
//! time zones a number's country and area code map to, from libphonenumber's
//! map (`data/phone_timezones.txt`) corrected by a small override table.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono_tz::Tz;
use phonenumber::country::Id as Region;
use phonenumber::{Mode, PhoneNumber};

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
    parsed: PhoneNumber,
    /// Fixed line, mobile, …: what validity and the zone lookup both need,
    /// found once (it is most of the cost of reading a number).
    kind: phonenumber::Type,
}

/// Reads a number in E.164 (`+12125550100`) or in the national format of
/// `region` (`(212) 555-0100`, `1-212-555-0100` for "US").
pub fn parse(text: &str, region: Option<Region>) -> Result<Number, NumberError> {
    let international = text.trim_start().starts_with('+');
    if !international && region.is_none() {
        return Err(NumberError::NoCountry);
    }
    let parsed = phonenumber::parse(if international { None } else { region }, text)
        .map_err(|_| NumberError::Unreadable)?;
    // Valid means of a known type in its country's plan (what
    // `phonenumber::is_valid` computes).
    let kind = parsed.number_type(&phonenumber::metadata::DATABASE);
    if kind == phonenumber::Type::Unknown {
        return Err(NumberError::Invalid);
    }
    Ok(Number {
        e164: parsed.format().mode(Mode::E164).to_string(),
        parsed,
        kind,
    })
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
        let country = self.parsed.code().value();
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
