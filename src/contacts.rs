//! Contact lists: CSV (RFC 4180, UTF-8, a header row naming schema fields) or
//! JSON lines, checked against the flow's contact schema. Numbers are
//! normalised to E.164, each contact's zones resolved, duplicates merged with
//! a warning. A row that fails is never dropped silently: it is reported with
//! its line and reason and kept, as written, for the rejects file.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use phonenumber::country::Id as Region;

use crate::calendar::{phone, zone};
use crate::ir::{self, Type, Value};

/// A contact that passed the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    /// 1-based line of the row in its file.
    pub line: usize,
    /// The dialled number, E.164.
    pub phone: String,
    /// Every schema field with a value (defaults applied; phone fields in E.164).
    pub fields: Fields,
    /// Candidate zones: a dial starts only when callable in all of them.
    pub zones: Vec<Tz>,
}

/// A contact's field values by name. A campaign holds a million of these, so
/// the names are shared (the schema's, once for every contact) and each
/// contact holds only its values, in the names' order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    names: Arc<[Arc<str>]>,
    values: Box<[Option<Value>]>,
}

impl Fields {
    /// No values yet, for these names.
    fn with_names(names: Arc<[Arc<str>]>) -> Fields {
        let values = vec![None; names.len()].into_boxed_slice();
        Fields { names, values }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        let at = self.names.iter().position(|n| &**n == name)?;
        self.values[at].as_ref()
    }

    /// Sets a field, replacing its value if it has one.
    pub fn insert(&mut self, name: &str, value: Value) {
        match self.names.iter().position(|n| &**n == name) {
            Some(at) => self.values[at] = Some(value),
            None => {
                let mut names = self.names.to_vec();
                names.push(Arc::from(name));
                self.names = names.into();
                let mut values = std::mem::take(&mut self.values).into_vec();
                values.push(Some(value));
                self.values = values.into_boxed_slice();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .filter_map(|(n, v)| Some((&**n, v.as_ref()?)))
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;
    fn index(&self, name: &str) -> &Value {
        self.get(name).expect("the contact has this field")
    }
}

impl From<BTreeMap<String, Value>> for Fields {
    fn from(map: BTreeMap<String, Value>) -> Self {
        let (names, values): (Vec<Arc<str>>, Vec<Option<Value>>) = map
            .into_iter()
            .map(|(n, v)| (Arc::from(n), Some(v)))
            .unzip();
        Fields {
            names: names.into(),
            values: values.into_boxed_slice(),
        }
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, Value>::deserialize(d).map(Fields::from)
    }
}

/// A row that failed, with what to fix, and the row as it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Reject {
    pub line: usize,
    pub reason: String,
    pub raw: String,
}

/// A later row with the number of an earlier one, merged into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplicate {
    pub line: usize,
    pub first_line: usize,
    pub phone: String,
}

#[derive(Debug, Default)]
pub struct Import {
    pub contacts: Vec<Contact>,
    pub rejects: Vec<Reject>,
    pub duplicates: Vec<Duplicate>,
    /// The CSV header, for the rejects file (empty for JSON lines).
    pub header: Vec<String>,
    /// Problems with the file as a whole (an unreadable header, a missing column).
    pub errors: Vec<String>,
}

/// What a row is checked against.
pub struct Rules<'a> {
    pub schema: &'a ir::Schema,
    pub zones: &'a [ir::ZoneSource],
    /// How national-format numbers are read (`region` in the flow or `--region`).
    pub region: Option<Region>,
    /// The schema's field names, shared by every contact.
    names: Arc<[Arc<str>]>,
}

impl<'a> Rules<'a> {
    pub fn new(
        schema: &'a ir::Schema,
        zones: &'a [ir::ZoneSource],
        region: Option<Region>,
    ) -> Rules<'a> {
        Rules {
            schema,
            zones,
            region,
            names: schema
                .fields
                .iter()
                .map(|f| Arc::from(f.name.as_str()))
                .collect(),
        }
    }
}

impl Rules<'_> {
    /// Checks one row given as field → text; `Err` holds the reason.
    fn contact(&self, line: usize, row: &HashMap<&str, &str>) -> Result<Contact, String> {
        let mut fields = Fields::with_names(self.names.clone());
        let mut numbers: HashMap<&str, phone::Number> = HashMap::new();
        for (at, f) in self.schema.fields.iter().enumerate() {
            let text = row
                .get(f.name.as_str())
                .map(|s| s.trim())
                .filter(|s| !s.is_empty());
            let Some(text) = text else {
                match &f.default {
                    Some(v) => {
                        fields.values[at] = Some(v.clone());
                    }
                    None if f.optional => {}
                    None => {
                        return Err(format!("`{}` is empty, and the schema requires it", f.name))
                    }
                }
                continue;
            };
            let value = match &f.ty {
                Type::Phone => {
                    let n = phone::parse(text, self.region)
                        .map_err(|e| format!("`{}` \"{text}\" {e}", f.name))?;
                    let v = Value::Text(n.e164.clone());
                    numbers.insert(&f.name, n);
                    v
                }
                ty => value(ty, text)
                    .map_err(|want| format!("`{}` \"{text}\" is not {want}", f.name))?,
            };
            fields.values[at] = Some(value);
        }
        let phone_field = self
            .schema
            .phone_field
            .as_deref()
            .ok_or("the schema has no phone field")?;
        let number = numbers
            .get(phone_field)
            .ok_or_else(|| format!("`{phone_field}` is empty"))?;
        let text_of = |name: &str| match fields.get(name) {
            Some(Value::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        let zones = zone::resolve(self.zones, text_of, Some(number)).map_err(|e| e.to_string())?;
        Ok(Contact {
            line,
            phone: number.e164.clone(),
            fields,
            zones,
        })
    }
}

/// Reads a text as a value of a field type; `Err` names what was expected.
fn value(ty: &Type, text: &str) -> Result<Value, String> {
    match ty {
        Type::Text | Type::Phone => Ok(Value::Text(text.to_string())),
        Type::Number => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Value::Number)
            .ok_or_else(|| "a number".into()),
        Type::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err("true or false".into()),
        },
        Type::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| "a date such as 2026-12-31".into()),
        Type::Datetime => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .map(|local| Value::Datetime(ir::LocalDateTime { local, zone: None }))
            .map_err(|_| "a date and time such as 2026-12-01 09:00".into()),
        Type::Duration => crate::syntax::parse_duration(text)
            .map(Value::Duration)
            .ok_or_else(|| "a duration such as 15m".into()),
        Type::Time => Err("a time of day".into()),
        Type::Timezone => Tz::from_str(text)
            .map(|_| Value::Text(text.to_string()))
            .map_err(|_| "an IANA time zone such as America/New_York".into()),
        Type::Enum(values) => {
            if values.iter().any(|v| v == text) {
                Ok(Value::Text(text.to_string()))
            } else {
                Err(format!("one of {}", values.join(", ")))
            }
        }
        Type::Optional(inner) => value(inner, text),
        Type::List(_) => Err("a single value".into()),
    }
}

impl Import {
    fn add(
        &mut self,
        rules: &Rules<'_>,
        line: usize,
        row: &HashMap<&str, &str>,
        raw: impl FnOnce() -> String,
        first: &mut HashMap<String, usize>,
    ) {
        let checked = rules.contact(line, row);
        self.record(line, checked, raw, first);
    }

    /// Keeps a checked row: a contact, a duplicate merged, or a reject.
    fn record(
        &mut self,
        line: usize,
        checked: Result<Contact, String>,
        raw: impl FnOnce() -> String,
        first: &mut HashMap<String, usize>,
    ) {
        match checked {
            Ok(c) => match first.get(&c.phone) {
                Some(&first_line) => self.duplicates.push(Duplicate {
                    line,
                    first_line,
                    phone: c.phone,
                }),
                None => {
                    first.insert(c.phone.clone(), line);
                    self.contacts.push(c);
                }
            },
            Err(reason) => self.rejects.push(Reject {
                line,
                reason,
                raw: raw(),
            }),
        }
    }
}

/// Imports a CSV list. Rows keep their physical line numbers (a quoted field
/// may span lines).
pub fn import_csv(text: &str, rules: &Rules<'_>) -> Import {
    let mut import = Import::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_string()).collect(),
        Err(e) => {
            import
                .errors
                .push(format!("the header row cannot be read: {e}"));
            return import;
        }
    };
    for f in rules
        .schema
        .fields
        .iter()
        .filter(|f| !f.optional && f.default.is_none())
    {
        if !header.contains(&f.name) {
            import.errors.push(format!(
                "the header has no `{}` column, which the schema requires",
                f.name
            ));
        }
    }
    import.header = header.clone();
    let body = text.trim_start_matches('\u{feff}');
    // Rows are read here in chunks and checked on worker threads (reading
    // numbers is most of the cost), then kept in file order.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut first = HashMap::new();
    let mut keep =
        |import: &mut Import, rows: Vec<Row>, checked: Vec<Option<Result<Contact, String>>>| {
            for (row, checked) in rows.into_iter().zip(checked) {
                let raw = || {
                    body.get(row.start..row.end)
                        .unwrap_or("")
                        .trim_end_matches(['\n', '\r'])
                        .to_string()
                };
                match (row.read, checked) {
                    (_, Some(checked)) => import.record(row.line, checked, raw, &mut first),
                    (Read::Rejected(reason), None) => import.rejects.push(Reject {
                        line: row.line,
                        reason,
                        raw: raw(),
                    }),
                    (Read::Fields(_), None) => unreachable!("every row of fields is checked"),
                }
            }
        };
    let check = |rows: &[Row]| -> Vec<Option<Result<Contact, String>>> {
        rows.iter()
            .map(|r| match &r.read {
                Read::Fields(record) => {
                    let row: HashMap<&str, &str> = header
                        .iter()
                        .map(String::as_str)
                        .zip(record.iter())
                        .collect();
                    Some(rules.contact(r.line, &row))
                }
                Read::Rejected(_) => None,
            })
            .collect()
    };
    let mut chunks = Chunks {
        reader,
        fields: header.len(),
    };
    if workers < 2 {
        while let Some(rows) = chunks.next_chunk() {
            let checked = check(&rows);
            keep(&mut import, rows, checked);
        }
        return import;
    }
    let (work, jobs) = std::sync::mpsc::sync_channel::<(usize, Vec<Row>)>(workers * 2);
    let jobs = std::sync::Mutex::new(jobs);
    std::thread::scope(|scope| {
        let (done, results) = std::sync::mpsc::channel();
        for _ in 0..workers {
            let (jobs, done, check) = (&jobs, done.clone(), &check);
            scope.spawn(move || loop {
                let job = jobs.lock().map(|j| j.recv());
                let Ok(Ok((k, rows))) = job else { break };
                let checked = check(&rows);
                if done.send((k, rows, checked)).is_err() {
                    break;
                }
            });
        }
        drop(done);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut sent = 0;
        let mut deliver =
            |import: &mut Import,
             k: usize,
             rows,
             checked,
             waiting: &mut std::collections::BTreeMap<usize, _>| {
                waiting.insert(k, (rows, checked));
                while let Some((rows, checked)) = waiting.remove(&next) {
                    keep(import, rows, checked);
                    next += 1;
                }
            };
        while let Some(rows) = chunks.next_chunk() {
            if work.send((sent, rows)).is_err() {
                break;
            }
            sent += 1;
            while let Ok((k, rows, checked)) = results.try_recv() {
                deliver(&mut import, k, rows, checked, &mut waiting);
            }
        }
        drop(work);
        for (k, rows, checked) in results {
            deliver(&mut import, k, rows, checked, &mut waiting);
        }
    });
    import
}

/// A row as read: its fields, or why it cannot be checked.
enum Read {
    Fields(csv::StringRecord),
    Rejected(String),
}

struct Row {
    line: usize,
    /// Where the row lies in the text, for the rejects file.
    start: usize,
    end: usize,
    read: Read,
}

/// Reads a CSV list in chunks of rows, with their physical lines.
struct Chunks<'t> {
    reader: csv::Reader<&'t [u8]>,
    fields: usize,
}

impl Chunks<'_> {
    const ROWS: usize = 4096;

    fn next_chunk(&mut self) -> Option<Vec<Row>> {
        let mut rows = Vec::with_capacity(Self::ROWS);
        while rows.len() < Self::ROWS {
            let line = self.reader.position().line() as usize;
            let start = self.reader.position().byte() as usize;
            let mut record = csv::StringRecord::new();
            let read = match self.reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) if record.len() != self.fields => Read::Rejected(format!(
                    "the row has {} fields, the header {}",
                    record.len(),
                    self.fields
                )),
                Ok(true) => Read::Fields(record),
                Err(e) => Read::Rejected(format!("the row cannot be read as CSV: {e}")),
            };
            let end = (self.reader.position().byte() as usize).max(start);
            rows.push(Row {
                line,
                start,
                end,
                read,
            });
        }
        (!rows.is_empty()).then_some(rows)
    }
}

/// Imports JSON lines: one object a line, keys naming schema fields.
pub fn import_jsonl(text: &str, rules: &Rules<'_>) -> Import {
    let mut import = Import::default();
    let mut first = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let object = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                import.rejects.push(Reject {
                    line,
                    reason: "the line is not a JSON object".into(),
                    raw: raw.to_string(),
                });
                continue;
            }
            Err(e) => {
                import.rejects.push(Reject {
                    line,
                    reason: format!("the line is not valid JSON: {e}"),
                    raw: raw.to_string(),
                });
                continue;
            }
        };
        let row: HashMap<String, String> = object
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        let row: HashMap<&str, &str> = row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        import.add(rules, line, &row, || raw.to_string(), &mut first);
    }
    import
}

/// The rejects file: the rejected rows as written, with their line and reason.
pub fn rejects_csv(import: &Import) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let mut header: Vec<&str> = vec!["line", "reason"];
    header.extend(import.header.iter().map(String::as_str));
    let _ = w.write_record(&header);
    for r in &import.rejects {
        let mut fields: Vec<String> = vec![r.line.to_string(), r.reason.clone()];
        if import.header.is_empty() {
            fields.push(r.raw.clone());
        } else {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(r.raw.as_bytes());
            if let Some(Ok(rec)) = reader.records().next() {
                fields.extend(rec.iter().map(str::to_string));
            } else {
                fields.push(r.raw.clone());
            }
        }
        let _ = w.write_record(&fields);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
