//! The `script` dialer (`--dialer script:FILE`): outcomes from a file, for
//! tests, rehearsals and crash drills. One line per number:
//!
//! ```text
//! # NUMBER   ATTEMPT; ATTEMPT; …          (the last attempt repeats)
//! +14155550100   busy; answered press 1
//! (212) 555-0100 no_answer lasting 25s; voicemail
//! *              answered lasting 200ms   # every other number
//! ```
//!
//! An attempt is `OUTCOME [press DIGITS] [transfer answered|failed|hangup]
//! [lasting DURATION]` (`ms`, `s`, `m`, `h`). A line `log FILE` makes the
//! dialer append every call it places to FILE (`NUMBER ATTEMPT`), written
//! before the call is answered: the dialer's own record, for audits and
//! crash drills. Attempt n of a contact plays
//! the n-th entry of its number's line, so a resumed run replays the same
//! script. A call to a number with no line and no `*` line is `invalid_number`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use chrono::Duration;
use phonenumber::country::Id as Region;

use super::{Ask, Call, CallId, Dialer, Dialled};
use crate::calendar::phone;
use crate::ir::{Outcome, TransferOutcome};

/// One scripted attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Scripted {
    pub outcome: Outcome,
    pub press: String,
    pub transfer: TransferOutcome,
    pub lasting: Duration,
}

#[derive(Debug, Default)]
pub struct ScriptDialer {
    by_number: HashMap<String, Vec<Scripted>>,
    otherwise: Option<Vec<Scripted>>,
    /// Keys still to press, and the transfer's outcome, on calls in progress.
    calls: RefCell<HashMap<CallId, (VecDeque<char>, TransferOutcome)>>,
    log: Option<RefCell<std::fs::File>>,
}

/// A line of the script that cannot be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl ScriptDialer {
    /// Reads a script; national numbers are read in `region`.
    pub fn parse(text: &str, region: Option<Region>) -> Result<ScriptDialer, ScriptError> {
        let mut script = ScriptDialer::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let text = raw.split('#').next().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            let err = |message: String| ScriptError { line, message };
            if let Some(path) = text.strip_prefix("log ") {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path.trim())
                    .map_err(|e| err(format!("cannot open the log {}: {e}", path.trim())))?;
                script.log = Some(RefCell::new(file));
                continue;
            }
            // The number ends where the first outcome word begins.
            let split = text
                .char_indices()
                .find(|(i, c)| c.is_ascii_lowercase() && text[..*i].ends_with(char::is_whitespace))
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    err(
                        "write a number, then what its calls do: `+14155550100 busy; answered`"
                            .into(),
                    )
                })?;
            let (number, attempts) = (text[..split].trim(), &text[split..]);
            let attempts = attempts
                .split(';')
                .map(|a| attempt(a.trim()).map_err(&err))
                .collect::<Result<Vec<_>, _>>()?;
            if number == "*" {
                script.otherwise = Some(attempts);
                continue;
            }
            let e164 = phone::parse(number, region)
                .map_err(|e| err(format!("\"{number}\" {e}")))?
                .e164;
            if script.by_number.insert(e164, attempts).is_some() {
                return Err(err(format!("\"{number}\" has a line already")));
            }
        }
        Ok(script)
    }

    /// What attempt `n` (1-based) to `number` does.
    pub fn scripted(&self, number: &str, n: u32) -> Option<&Scripted> {
        let list = self.by_number.get(number).or(self.otherwise.as_ref())?;
        list.get(n.saturating_sub(1) as usize).or(list.last())
    }
}

fn attempt(text: &str) -> Result<Scripted, String> {
    let mut words = text.split_whitespace();
    let name = words
        .next()
        .ok_or("an attempt is empty: write an outcome such as `busy`")?;
    let outcome = Outcome::from_name(name)
        .filter(|o| Outcome::DIAL.contains(o))
        .ok_or_else(|| {
            format!(
                "`{name}` is not a dial outcome; write one of {}",
                Outcome::dial_names().join(", ")
            )
        })?;
    let mut s = Scripted {
        outcome,
        press: String::new(),
        transfer: TransferOutcome::Answered,
        lasting: Duration::zero(),
    };
    while let Some(word) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("`{word}` needs a value"))?;
        match word {
            "press" => {
                let keys = value.trim_matches('"');
                if !keys.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#') {
                    return Err(format!("`press {value}`: keys are digits, * and #"));
                }
                s.press = keys.to_string();
            }
            "transfer" => {
                s.transfer = match value {
                    "answered" => TransferOutcome::Answered,
                    "failed" => TransferOutcome::Failed,
                    "hangup" => TransferOutcome::Hangup,
                    _ => return Err(format!("`transfer {value}`: write answered, failed or hangup")),
                }
            }
            "lasting" => s.lasting = duration(value)?,
            _ => {
                return Err(format!(
                    "`{word}` is not understood here; an attempt may add `press`, `transfer` and `lasting`"
                ))
            }
        }
    }
    Ok(s)
}

fn duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 30s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::milliseconds(n)),
        "s" => Ok(Duration::seconds(n)),
        "m" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        _ => Err(format!(
            "`{text}` is not a duration such as 500ms, 30s or 2m"
        )),
    }
}

impl Dialer for ScriptDialer {
    async fn place(&self, call: Call) -> Dialled {
        if let Some(log) = &self.log {
            use std::io::Write;
            // One write a call: it reaches the file even if the process dies next.
            let line = format!("{} {}\n", call.number, call.id.attempt);
            let _ = log.borrow_mut().write_all(line.as_bytes());
        }
        let Some(s) = self.scripted(&call.number, call.id.attempt) else {
            return Dialled {
                outcome: Outcome::InvalidNumber,
                duration: Duration::zero(),
                sip: None,
            };
        };
        if s.outcome == Outcome::Answered {
            self.calls
                .borrow_mut()
                .insert(call.id, (s.press.chars().collect(), s.transfer));
        }
        Dialled {
            outcome: s.outcome,
            duration: s.lasting,
            sip: None,
        }
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        let mut calls = self.calls.borrow_mut();
        let (queue, _) = calls.get_mut(&call)?;
        let pressed: String = (0..ask.digits).filter_map(|_| queue.pop_front()).collect();
        (!pressed.is_empty()).then_some(pressed)
    }

    async fn transfer(&self, call: CallId, _number: String, _timeout: u64) -> TransferOutcome {
        self.calls
            .borrow()
            .get(&call)
            .map_or(TransferOutcome::Answered, |(_, t)| *t)
    }

    async fn hang_up(&self, call: CallId) {
        self.calls.borrow_mut().remove(&call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_attempts_and_the_fallback() {
        let s = ScriptDialer::parse(
            "# a script\n+14155550100 busy; answered press 12 lasting 30s\n(212) 555-0100 voicemail\n* no_answer lasting 250ms\n",
            phone::region("US"),
        )
        .unwrap();
        assert_eq!(
            s.scripted("+14155550100", 1).unwrap().outcome,
            Outcome::Busy
        );
        let second = s.scripted("+14155550100", 2).unwrap();
        assert_eq!(second.press, "12");
        assert_eq!(second.lasting, Duration::seconds(30));
        // The last attempt repeats.
        assert_eq!(
            s.scripted("+14155550100", 9).unwrap().outcome,
            Outcome::Answered
        );
        assert_eq!(
            s.scripted("+12125550100", 1).unwrap().outcome,
            Outcome::Voicemail
        );
        assert_eq!(
            s.scripted("+33612345678", 1).unwrap().lasting,
            Duration::milliseconds(250)
        );
    }

    #[test]
    fn says_which_line_is_wrong() {
        let e = ScriptDialer::parse("+14155550100 busy\n+14155550101 bussy\n", None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`bussy` is not a dial outcome"), "{e}");
        let e = ScriptDialer::parse("+14155550100 answered lasting soon\n", None).unwrap_err();
        assert!(e.message.contains("not a duration"), "{e}");
    }
}
