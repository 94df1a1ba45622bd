//! A contact's field values, kept small: a campaign holds a million of
//! these. The names are shared (the schema's, once for every contact) and
//! each contact holds only its values, in the names' order, encoded in one
//! byte string: the benchmark's six fields take about 50 bytes there, and
//! 240 bytes plus four allocations as `Value`s.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::ir::{LocalDateTime, Value};

/// The schema's field names, shared (a thin pointer: eight bytes a contact).
pub(crate) type Names = Arc<Vec<Arc<str>>>;

#[derive(Clone, Default, PartialEq)]
pub struct Fields {
    names: Names,
    /// One value per name, in order, as `encode` writes them.
    data: Box<[u8]>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Fields {
    /// These names' values, `None` where a field has none.
    pub(crate) fn new(names: Names, values: &[Option<Value>]) -> Fields {
        debug_assert_eq!(names.len(), values.len());
        let mut data = Vec::with_capacity(values.len() * 8);
        for v in values {
            encode(v.as_ref(), &mut data);
        }
        Fields {
            names,
            data: data.into_boxed_slice(),
        }
    }

    /// Every name's value in order, `None` where it has none.
    fn values(&self) -> impl Iterator<Item = Option<Value>> + '_ {
        let mut rest = &self.data[..];
        (0..self.names.len()).map(move |_| decode(&mut rest))
    }

    /// The encoded value of `name` and what follows it; `None` when the
    /// name is not one of these fields.
    fn encoded(&self, name: &str) -> Option<&[u8]> {
        let at = self.names.iter().position(|n| &**n == name)?;
        let mut rest = &self.data[..];
        for _ in 0..at {
            skip(&mut rest);
        }
        Some(rest)
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        decode(&mut self.encoded(name)?)
    }

    /// A text value, borrowed (phone, text, enum and timezone fields).
    pub fn text(&self, name: &str) -> Option<&str> {
        let mut rest = self.encoded(name)?;
        match take(&mut rest, 1)[0] {
            TEXT => Some(text(&mut rest)),
            _ => None,
        }
    }

    /// Sets a field, replacing its value if it has one.
    pub fn insert(&mut self, name: &str, value: Value) {
        let mut values: Vec<Option<Value>> = self.values().collect();
        match self.names.iter().position(|n| &**n == name) {
            Some(at) => values[at] = Some(value),
            None => {
                let mut names = self.names.to_vec();
                names.push(Arc::from(name));
                self.names = Arc::new(names);
                values.push(Some(value));
            }
        }
        *self = Fields::new(self.names.clone(), &values);
    }

    /// The fields with a value, in the names' order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Value)> {
        self.names
            .iter()
            .zip(self.values())
            .filter_map(|(n, v)| Some((&**n, v?)))
    }

    /// Fields of these names and values, the names shared with the previous
    /// call's on this thread when they are the same.
    fn shared<'a>(pairs: impl ExactSizeIterator<Item = (Cow<'a, str>, Value)>) -> Fields {
        thread_local! {
            static LAST: std::cell::RefCell<Names> = std::cell::RefCell::default();
        }
        let mut names: Vec<Cow<'a, str>> = Vec::with_capacity(pairs.len());
        let mut values = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            names.push(n);
            values.push(Some(v));
        }
        let names = LAST.with(|last| {
            let mut last = last.borrow_mut();
            let same =
                last.len() == names.len() && last.iter().zip(&names).all(|(a, b)| **a == **b);
            if !same {
                *last = Arc::new(names.iter().map(|n| Arc::from(&**n)).collect());
            }
            last.clone()
        });
        Fields::new(names, &values)
    }
}

impl From<BTreeMap<String, Value>> for Fields {
    fn from(map: BTreeMap<String, Value>) -> Self {
        let (names, values): (Vec<Arc<str>>, Vec<Option<Value>>) = map
            .into_iter()
            .map(|(n, v)| (Arc::from(n), Some(v)))
            .unzip();
        Fields::new(Arc::new(names), &values)
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Read as a map, names in order (the last of a repeated name wins); the
/// names are shared with the previous contact read on this thread when they
/// are the same, as a stored campaign's are: a million contacts read back
/// then hold one copy of them, not a million.
impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name<'de>(Cow<'de, str>);
        impl<'de> serde::Deserialize<'de> for Name<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Name<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a field name")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                        Ok(Name(Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                        Ok(Name(Cow::Owned(v.to_string())))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of field names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut pairs: Vec<(Name<'de>, Value)> = Vec::new();
                while let Some(pair) = m.next_entry::<Name<'de>, Value>()? {
                    pairs.push(pair);
                }
                // Sorted by name, the last of a repeated name kept.
                pairs.reverse();
                pairs.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
                pairs.dedup_by(|later, earlier| later.0 .0 == earlier.0 .0);
                Ok(Fields::shared(pairs.into_iter().map(|(n, v)| (n.0, v))))
            }
        }
        d.deserialize_map(V)
    }
}

// The encoding: a tag byte, then the value. Lengths are LEB128 varints.
const NONE: u8 = 0;
const TEXT: u8 = 1;
const NUMBER: u8 = 2;
const FALSE: u8 = 3;
const TRUE: u8 = 4;
/// Days since 1 January of year 1, i32.
const DATE: u8 = 5;
/// Days as for DATE, seconds since midnight u32, nanoseconds u32, then the
/// zone's name as a text (empty: none).
const DATETIME: u8 = 6;
const DURATION: u8 = 7;
const TIME: u8 = 8;

fn encode(value: Option<&Value>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.push(NONE);
        return;
    };
    match value {
        Value::Text(t) => {
            out.push(TEXT);
            put_text(t, out);
        }
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        Value::Date(d) => {
            out.push(DATE);
            out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
        }
        Value::Datetime(LocalDateTime { local, zone }) => {
            out.push(DATETIME);
            out.extend_from_slice(&local.date().num_days_from_ce().to_le_bytes());
            let time = local.time();
            out.extend_from_slice(&time.num_seconds_from_midnight().to_le_bytes());
            out.extend_from_slice(&time.nanosecond().to_le_bytes());
            put_text(zone.as_deref().unwrap_or(""), out);
        }
        Value::Duration(s) => {
            out.push(DURATION);
            out.extend_from_slice(&s.to_le_bytes());
        }
        Value::Time(m) => {
            out.push(TIME);
            out.extend_from_slice(&m.to_le_bytes());
        }
    }
}

fn put_text(t: &str, out: &mut Vec<u8>) {
    let mut n = t.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(t.as_bytes());
}

// Decoding reads only what `encode` wrote: a short or malformed buffer is
// a bug of this module, and panics.

fn take<'d>(rest: &mut &'d [u8], n: usize) -> &'d [u8] {
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    head
}

fn array<const N: usize>(rest: &mut &[u8]) -> [u8; N] {
    take(rest, N).try_into().expect("N bytes")
}

fn text<'d>(rest: &mut &'d [u8]) -> &'d str {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = take(rest, 1)[0];
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    std::str::from_utf8(take(rest, n)).expect("encoded from a string")
}

fn date(rest: &mut &[u8]) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(array(rest)))
        .expect("encoded from a date")
}

fn decode(rest: &mut &[u8]) -> Option<Value> {
    Some(match take(rest, 1)[0] {
        NONE => return None,
        TEXT => Value::Text(text(rest).to_string()),
        NUMBER => Value::Number(f64::from_le_bytes(array(rest))),
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        DATE => Value::Date(date(rest)),
        DATETIME => {
            let day = date(rest);
            let secs = u32::from_le_bytes(array(rest));
            let nanos = u32::from_le_bytes(array(rest));
            let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .expect("encoded from a time");
            let zone = text(rest);
            Value::Datetime(LocalDateTime {
                local: NaiveDateTime::new(day, time),
                zone: (!zone.is_empty()).then(|| zone.to_string()),
            })
        }
        DURATION => Value::Duration(u64::from_le_bytes(array(rest))),
        TIME => Value::Time(u16::from_le_bytes(array(rest))),
        tag => unreachable!("no value is encoded with tag {tag}"),
    })
}

fn skip(rest: &mut &[u8]) {
    match take(rest, 1)[0] {
        NONE | FALSE | TRUE => {}
        TEXT => {
            text(rest);
        }
        NUMBER | DURATION => {
            take(rest, 8);
        }
        DATE => {
            take(rest, 4);
        }
        DATETIME => {
            take(rest, 12);
            text(rest);
        }
        TIME => {
            take(rest, 2);
        }
        tag => unreachable!("no value is encoded with tag {tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_reads_back_as_written() {
        let names: Names = Arc::new(
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
                .iter()
                .map(|n| Arc::from(*n))
                .collect(),
        );
        let long = "é".repeat(200);
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let values = vec![
            Some(Value::Text("+33612345678".into())),
            None,
            Some(Value::Number(-4505.49)),
            Some(Value::Bool(true)),
            Some(Value::Bool(false)),
            Some(Value::Date(day)),
            Some(Value::Datetime(LocalDateTime {
                local: day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
                zone: Some("Europe/Paris".into()),
            })),
            Some(Value::Datetime(LocalDateTime {
                local: day.and_hms_opt(8, 0, 0).unwrap(),
                zone: None,
            })),
            Some(Value::Duration(u64::MAX)),
            Some(Value::Time(1439)),
            Some(Value::Text(long.clone())),
        ];
        let fields = Fields::new(names, &values);
        assert_eq!(fields.values().collect::<Vec<_>>(), values);
        assert_eq!(fields.get("k"), Some(Value::Text(long.clone())));
        assert_eq!(fields.text("k"), Some(long.as_str()));
        assert_eq!(fields.text("c"), None);
        assert_eq!(fields.get("b"), None);
        assert_eq!(fields.get("z"), None);
        assert_eq!(fields.iter().count(), 10);
    }

    #[test]
    fn insert_replaces_or_adds() {
        let mut fields = Fields::from(BTreeMap::from([
            ("phone".to_string(), Value::Text("+1".into())),
            ("vip".to_string(), Value::Bool(false)),
        ]));
        fields.insert("vip", Value::Bool(true));
        fields.insert("age", Value::Number(40.0));
        assert_eq!(fields.get("vip"), Some(Value::Bool(true)));
        assert_eq!(fields.get("age"), Some(Value::Number(40.0)));
        assert_eq!(fields.text("phone"), Some("+1"));
        let json = serde_json::to_string(&fields).unwrap();
        let read: Fields = serde_json::from_str(&json).unwrap();
        let map = |f: &Fields| -> BTreeMap<String, Value> {
            f.iter().map(|(n, v)| (n.to_string(), v)).collect()
        };
        assert_eq!(map(&read), map(&fields));
    }
}
