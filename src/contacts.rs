//! Contact lists: CSV (RFC 4180, UTF-8, a header row naming schema fields) or
//! JSON lines, checked against the flow's contact schema. Numbers are
//! normalised to E.164, each contact's zones resolved, duplicates merged with
//! a warning. A row that fails is never dropped silently: it is reported with
//! its line and reason and kept, as written, for the rejects file.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use phonenumber::country::Id as Region;

use crate::calendar::{phone, zone};
use crate::ir::{self, Type, Value};

mod fields;
pub use fields::Fields;

/// A campaign's contacts, shared by the engine and the store's writer
/// thread (which writes them while the campaign runs, without copies).
pub type List = Arc<Vec<Contact>>;

/// A contact that passed the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Contact {
    /// 1-based line of the row in its file.
    pub line: u32,
    /// The dialled number, E.164 (shared with the contact's result).
    pub phone: Arc<str>,
    /// Every schema field with a value (defaults applied; phone fields in E.164).
    pub fields: Fields,
    /// Candidate zones: a dial starts only when callable in all of them.
    pub zones: Box<[Tz]>,
    /// The number as the list wrote it, when that is not its E.164 form.
    pub written: Option<Box<str>>,
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
    names: fields::Names,
    /// The place of the dialled field (`phone_field`) in the schema.
    phone_at: Option<usize>,
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
            names: Arc::new(
                schema
                    .fields
                    .iter()
                    .map(|f| Arc::from(f.name.as_str()))
                    .collect(),
            ),
            phone_at: schema
                .phone_field
                .as_ref()
                .and_then(|p| schema.fields.iter().position(|f| f.name == *p)),
        }
    }
}

impl Rules<'_> {
    /// Checks one row, given as the text of each schema field (by its
    /// place in the schema); `Err` holds the reason.
    fn contact<'r>(
        &self,
        line: usize,
        cell: impl Fn(usize) -> Option<&'r str>,
    ) -> Result<Contact, String> {
        let mut values: Vec<Option<Value>> = vec![None; self.names.len()];
        // The dialled field's number (other phone fields are checked only).
        let mut dialled = None;
        for (at, f) in self.schema.fields.iter().enumerate() {
            let text = cell(at).map(|s| s.trim()).filter(|s| !s.is_empty());
            let Some(text) = text else {
                match &f.default {
                    Some(v) => {
                        values[at] = Some(v.clone());
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
                        .map_err(|e| format!("`{}` \"{}\" {e}", f.name, printable(text)))?;
                    let v = Value::Text(n.e164.clone());
                    if Some(at) == self.phone_at {
                        dialled = Some(n);
                    }
                    v
                }
                ty => value(ty, text).map_err(|want| {
                    format!("`{}` \"{}\" is not {want}", f.name, printable(text))
                })?,
            };
            values[at] = Some(value);
        }
        let phone_field = self
            .schema
            .phone_field
            .as_deref()
            .ok_or("the schema has no phone field")?;
        let number = dialled
            .as_ref()
            .ok_or_else(|| format!("`{phone_field}` is empty"))?;
        let fields = Fields::new(self.names.clone(), &values);
        let text_of = |name: &str| fields.text(name);
        let zones = zone::resolve(self.zones, text_of, Some(number)).map_err(|e| e.to_string())?;
        let written = self
            .phone_at
            .and_then(&cell)
            .map(|t| t.trim())
            .filter(|t| *t != number.e164)
            .map(Box::from);
        Ok(Contact {
            // A list of more than four billion lines reads, past them, as
            // its last line.
            line: u32::try_from(line).unwrap_or(u32::MAX),
            phone: number.e164.as_str().into(),
            fields,
            zones: zones.into(),
            written,
        })
    }
}

/// A value of the list as a message may show it: control characters (a
/// terminal's escape sequences, line breaks) are written as escapes, so a
/// hostile field cannot retitle or clear a terminal or forge a CI command.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        std::borrow::Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(text)
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
    /// Keeps a checked row: a contact, a duplicate merged, or a reject.
    fn record(
        &mut self,
        line: usize,
        checked: Result<Contact, String>,
        raw: impl FnOnce() -> String,
        first: &mut HashMap<Arc<str>, usize>,
    ) {
        match checked {
            Ok(c) => match first.get(&*c.phone) {
                Some(&first_line) => self.duplicates.push(Duplicate {
                    line,
                    first_line,
                    phone: c.phone.to_string(),
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

/// The longest row of a contact list, in bytes (a quoted field spanning
/// lines counts them all): a longer one is rejected, with its first bytes
/// kept in the rejects file.
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// How many lines a quoted field may span before its quote counts as
/// never closed.
pub const MAX_ROW_LINES: usize = 100;
/// How much of a row too long to read is kept in the rejects file.
const KEPT_OF_LONG_ROW: usize = 200;
/// A line with no end within this many bytes stops the reading: the file
/// is not a contact list (a device such as /dev/zero, a binary file).
pub const MAX_LINE_SCAN: usize = 16 * 1024 * 1024;

/// Imports a CSV list held in memory (see [`read_csv`]).
pub fn import_csv(text: &str, rules: &Rules<'_>) -> Import {
    read_csv(text.as_bytes(), rules)
}

/// Imports JSON lines held in memory (see [`read_jsonl`]).
pub fn import_jsonl(text: &str, rules: &Rules<'_>) -> Import {
    read_jsonl(text.as_bytes(), rules)
}

/// One physical line of a list, read with a bound on its length.
struct Line {
    number: usize,
    /// The line without its end; `None` when it is not UTF-8.
    text: Option<String>,
    /// The line was longer than [`MAX_ROW_BYTES`]: its length, and `text`
    /// holds its first bytes only.
    too_long: Option<usize>,
}

/// Reads physical lines, never holding more than [`MAX_ROW_BYTES`] of one.
struct Lines<R> {
    reader: R,
    number: usize,
    failed: Option<std::io::Error>,
}

/// The error of a line with no end in sight.
fn endless(line: usize) -> std::io::Error {
    std::io::Error::other(format!(
        "line {line} has no end within {} MiB: this is not a contact list",
        MAX_LINE_SCAN / (1024 * 1024)
    ))
}

impl<R: std::io::BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            number: 0,
            failed: None,
        }
    }

    fn next_line(&mut self) -> Option<Line> {
        let mut bytes = Vec::new();
        let mut length = 0usize;
        let mut any = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failed = Some(e);
                    return None;
                }
            };
            if buf.is_empty() {
                if !any {
                    return None;
                }
                break;
            }
            any = true;
            let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(at) => (&buf[..at], Some(at + 1)),
                None => (buf, None),
            };
            let room = (MAX_ROW_BYTES + 1).saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            length += chunk.len();
            let used = done.unwrap_or(buf.len());
            self.reader.consume(used);
            if done.is_some() {
                break;
            }
            if length > MAX_LINE_SCAN {
                self.failed = Some(endless(self.number + 1));
                return None;
            }
        }
        self.number += 1;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
            length -= 1;
        }
        if self.number == 1 && bytes.starts_with("\u{feff}".as_bytes()) {
            bytes.drain(..3);
        }
        let too_long = (length > MAX_ROW_BYTES).then_some(length);
        if too_long.is_some() {
            bytes.truncate(KEPT_OF_LONG_ROW);
            // Cut at a character boundary.
            while !bytes.is_empty() && std::str::from_utf8(&bytes).is_err() {
                bytes.pop();
            }
        }
        Some(Line {
            number: self.number,
            text: String::from_utf8(bytes).ok(),
            too_long,
        })
    }
}

/// A record of a CSV list as read: its fields, or why it cannot be checked.
enum Read {
    Fields(csv::StringRecord),
    Rejected(String),
}

struct Row {
    line: usize,
    /// The row as written (its lines joined), for the rejects file.
    raw: String,
    read: Read,
}

/// Cuts a CSV list into records. A quoted field may span lines; a quote
/// that is never closed (the lines it would swallow do not make one
/// record of the header's width) rejects its own line only, and reading
/// starts again on the next line, so one stray quote loses no other row.
struct Records<R> {
    lines: Lines<R>,
    /// Lines read ahead and given back.
    back: VecDeque<Line>,
    fields: usize,
}

impl<R: std::io::BufRead> Records<R> {
    fn next_line(&mut self) -> Option<Line> {
        self.back.pop_front().or_else(|| self.lines.next_line())
    }

    fn next_row(&mut self) -> Option<Row> {
        loop {
            let first = self.next_line()?;
            let line = first.number;
            let Some(text) = first.text else {
                return Some(Row {
                    line,
                    raw: String::new(),
                    read: Read::Rejected(
                        "the row is not UTF-8 text: save the list as UTF-8".into(),
                    ),
                });
            };
            if let Some(length) = first.too_long {
                return Some(Row {
                    line,
                    raw: format!("{text}…"),
                    read: Read::Rejected(format!(
                        "the row is {length} bytes long, more than the {MAX_ROW_BYTES} a row may hold"
                    )),
                });
            }
            if text.trim().is_empty() {
                continue;
            }
            let mut raw = text;
            let mut taken: Vec<Line> = Vec::new();
            while quotes_open(&raw) && taken.len() < MAX_ROW_LINES && raw.len() <= MAX_ROW_BYTES {
                let Some(next) = self.next_line() else { break };
                match (&next.text, next.too_long) {
                    (Some(t), None) => {
                        raw.push('\n');
                        raw.push_str(t);
                        taken.push(next);
                    }
                    _ => {
                        self.back.push_back(next);
                        break;
                    }
                }
            }
            let read = parse_record(&raw, self.fields);
            if taken.is_empty() {
                return Some(Row { line, raw, read });
            }
            if matches!(read, Read::Fields(_)) && !quotes_open(&raw) {
                return Some(Row { line, raw, read });
            }
            // The quote opened on this line does not close a record: this
            // line alone is rejected, and the lines after it are read again.
            for l in taken.into_iter().rev() {
                self.back.push_front(l);
            }
            let raw = raw.split('\n').next().unwrap_or("").to_string();
            return Some(Row {
                line,
                raw,
                read: Read::Rejected(
                    "a quote (\") opens a field on this line and no later line closes it: \
                     close the quote, or double it (\"\") inside a quoted field"
                        .into(),
                ),
            });
        }
    }

    fn next_chunk(&mut self) -> Option<Vec<Row>> {
        const ROWS: usize = 4096;
        let mut rows = Vec::with_capacity(ROWS);
        while rows.len() < ROWS {
            match self.next_row() {
                Some(r) => rows.push(r),
                None => break,
            }
        }
        (!rows.is_empty()).then_some(rows)
    }
}

/// Whether a text ends inside a quoted field (an odd number of quotes).
fn quotes_open(text: &str) -> bool {
    text.bytes().filter(|b| *b == b'"').count() % 2 == 1
}

/// Reads one record's text, which must have `fields` fields.
fn parse_record(raw: &str, fields: usize) -> Read {
    // Most rows quote nothing: split them without a CSV reader.
    if !raw.contains('"') {
        let record: csv::StringRecord = raw.split(',').collect();
        return if record.len() == fields {
            Read::Fields(record)
        } else {
            Read::Rejected(format!(
                "the row has {} fields, the header {fields}",
                record.len()
            ))
        };
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) if record.len() != fields => Read::Rejected(format!(
            "the row has {} fields, the header {fields}",
            record.len()
        )),
        Ok(true) => Read::Fields(record),
        Ok(false) => Read::Rejected("the row is empty".into()),
        Err(e) => Read::Rejected(format!("the row cannot be read as CSV: {e}")),
    }
}

/// Imports a CSV list, read as a stream: rows keep their physical line
/// numbers (a quoted field may span lines), each row is bounded
/// ([`MAX_ROW_BYTES`]), and the list is never held whole.
pub fn read_csv(reader: impl std::io::BufRead, rules: &Rules<'_>) -> Import {
    let mut import = Import::default();
    let mut lines = Lines::new(reader);
    let header: Vec<String> = match lines.next_line() {
        None => {
            import.errors.push(match lines.failed.take() {
                Some(e) => format!("the list cannot be read: {e}"),
                None => "the list is empty: it needs a header row naming its columns".into(),
            });
            return import;
        }
        Some(l) if l.too_long.is_some() => {
            import.errors.push(format!(
                "the header row is longer than {MAX_ROW_BYTES} bytes: is this a contact list?"
            ));
            return import;
        }
        Some(l) => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(l.text.as_deref().unwrap_or("").as_bytes());
            let mut record = csv::StringRecord::new();
            match (l.text.is_some(), reader.read_record(&mut record)) {
                (true, Ok(true)) => record.iter().map(|c| c.trim().to_string()).collect(),
                _ => {
                    import
                        .errors
                        .push("the header row cannot be read: save the list as UTF-8 CSV".into());
                    return import;
                }
            }
        }
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (at, name) in header.iter().enumerate() {
        if let Some(first) = seen.insert(name.as_str(), at) {
            if !name.is_empty() {
                import.errors.push(format!(
                    "the header names the column `{name}` twice (columns {} and {}): remove or rename one",
                    first + 1,
                    at + 1
                ));
            }
        }
    }
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
    if !import.errors.is_empty() {
        return import;
    }
    import.header = header.clone();
    // Rows are read here in chunks and checked on worker threads (reading
    // numbers is most of the cost), then kept in file order.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut first = HashMap::new();
    let keep = |import: &mut Import,
                rows: Vec<Row>,
                checked: Vec<Option<Result<Contact, String>>>,
                first: &mut HashMap<Arc<str>, usize>| {
        for (row, checked) in rows.into_iter().zip(checked) {
            match (row.read, checked) {
                (_, Some(checked)) => import.record(row.line, checked, || row.raw, first),
                (Read::Rejected(reason), None) => import.rejects.push(Reject {
                    line: row.line,
                    reason,
                    raw: row.raw,
                }),
                (Read::Fields(_), None) => unreachable!("every row of fields is checked"),
            }
        }
    };
    // Each schema field's column, found once.
    let columns: Vec<Option<usize>> = rules
        .schema
        .fields
        .iter()
        .map(|f| header.iter().position(|h| *h == f.name))
        .collect();
    let check = |rows: &[Row]| -> Vec<Option<Result<Contact, String>>> {
        rows.iter()
            .map(|r| match &r.read {
                Read::Fields(record) => {
                    Some(rules.contact(r.line, |at| columns[at].and_then(|c| record.get(c))))
                }
                Read::Rejected(_) => None,
            })
            .collect()
    };
    let mut records = Records {
        lines,
        back: VecDeque::new(),
        fields: header.len(),
    };
    if workers < 2 {
        while let Some(rows) = records.next_chunk() {
            let checked = check(&rows);
            keep(&mut import, rows, checked, &mut first);
        }
    } else {
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
            let mut waiting = BTreeMap::new();
            let mut next = 0;
            let mut sent = 0;
            let mut deliver =
                |import: &mut Import, k: usize, rows, checked, waiting: &mut BTreeMap<usize, _>| {
                    waiting.insert(k, (rows, checked));
                    while let Some((rows, checked)) = waiting.remove(&next) {
                        keep(import, rows, checked, &mut first);
                        next += 1;
                    }
                };
            while let Some(rows) = records.next_chunk() {
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
    }
    if let Some(e) = records.lines.failed.take() {
        import.errors.push(format!(
            "the list could not be read past line {}: {e}",
            records.lines.number
        ));
    }
    // The list stays as long as the campaign: no room to grow.
    import.contacts.shrink_to_fit();
    import
}

/// Imports JSON lines, read as a stream: one object a line, keys naming
/// schema fields; each line bounded as a CSV row is.
pub fn read_jsonl(reader: impl std::io::BufRead, rules: &Rules<'_>) -> Import {
    let mut import = Import::default();
    let mut first = HashMap::new();
    let mut lines = Lines::new(reader);
    while let Some(l) = lines.next_line() {
        let line = l.number;
        let reject = |import: &mut Import, reason: String, raw: String| {
            import.rejects.push(Reject { line, reason, raw });
        };
        let Some(raw) = l.text else {
            reject(
                &mut import,
                "the line is not UTF-8 text".into(),
                String::new(),
            );
            continue;
        };
        if let Some(length) = l.too_long {
            reject(
                &mut import,
                format!(
                    "the line is {length} bytes long, more than the {MAX_ROW_BYTES} a row may hold"
                ),
                format!("{raw}…"),
            );
            continue;
        }
        if raw.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<serde_json::Value>(&raw) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                reject(&mut import, "the line is not a JSON object".into(), raw);
                continue;
            }
            Err(e) => {
                reject(&mut import, format!("the line is not valid JSON: {e}"), raw);
                continue;
            }
        };
        let mut row: HashMap<String, String> = HashMap::new();
        let mut wrong = None;
        for (k, v) in object {
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => {
                    row.insert(k, s);
                }
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                    row.insert(k, v.to_string());
                }
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    let what = if v.is_array() { "a list" } else { "an object" };
                    wrong.get_or_insert(format!(
                        "`{}` is {what}; write a text, a number or true/false",
                        printable(&k)
                    ));
                }
            }
        }
        if let Some(reason) = wrong {
            reject(&mut import, reason, raw);
            continue;
        }
        let checked = rules.contact(line, |at| {
            row.get(&rules.schema.fields[at].name).map(String::as_str)
        });
        import.record(line, checked, || raw.clone(), &mut first);
    }
    if let Some(e) = lines.failed.take() {
        import.errors.push(format!(
            "the list could not be read past line {}: {e}",
            lines.number
        ));
    }
    // The list stays as long as the campaign: no room to grow.
    import.contacts.shrink_to_fit();
    import
}

/// A cell as a spreadsheet may read it safely: one that would run as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return)
/// gets a leading `'`, as OWASP recommends against CSV injection.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The rejects file: the rejected rows as written, with their line and
/// reason, one record each (a row of another width keeps its own width);
/// cells are made safe for spreadsheets.
pub fn rejects_csv(import: &Import) -> String {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    let mut header: Vec<&str> = vec!["line", "reason"];
    header.extend(import.header.iter().map(String::as_str));
    let _ = w.write_record(&header);
    for r in &import.rejects {
        let mut fields: Vec<String> = vec![r.line.to_string(), r.reason.clone()];
        let parsed = if import.header.is_empty() {
            None
        } else {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(r.raw.as_bytes());
            let mut record = csv::StringRecord::new();
            // One record that is the whole row (a stray quote is not).
            match reader.read_record(&mut record) {
                Ok(true)
                    if reader.position().byte() as usize >= r.raw.len() && !quotes_open(&r.raw) =>
                {
                    Some(record)
                }
                _ => None,
            }
        };
        match parsed {
            Some(record) => fields.extend(record.iter().map(str::to_string)),
            None => fields.push(r.raw.clone()),
        }
        let safe: Vec<std::borrow::Cow<'_, str>> =
            fields.iter().map(|f| spreadsheet_safe(f)).collect();
        let _ = w.write_record(safe.iter().map(|c| c.as_bytes()));
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
