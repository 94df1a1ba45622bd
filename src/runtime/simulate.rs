//! The campaign simulator: every contact's run on one virtual clock, with the
//! `sim` dialer, fair by due time, within the flow's concurrency and pacing.
//! Events are processed in time order; a call occupies a line from its start
//! to its end, so concurrency and rate limits act as they would for real.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::interpreter::{self, Attempt, Contact, End, Reply, Request, Run};
use crate::contacts;
use crate::dialer::{Call, SimDialer};
use crate::ir::{self, ArmId, Outcome, StepId, Value};

/// What became of one contact.
#[derive(Clone, Debug)]
pub struct ContactResult {
    pub line: usize,
    pub phone: String,
    pub zone: Tz,
    pub arm: ArmId,
    pub end: End,
    pub attempts: Vec<Attempt>,
    pub path: Vec<StepId>,
}

#[derive(Debug)]
pub struct Simulation {
    pub contacts: Vec<ContactResult>,
    pub start: DateTime<Utc>,
    /// The virtual instant the last contact finished.
    pub finish: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The contact's pending request is due.
    Due,
    /// The contact's call has ended.
    CallEnded,
}

/// An event for a contact at an instant; the sequence number keeps events of
/// one instant in the order they were scheduled (fair by due time).
type Scheduled = (DateTime<Utc>, u64, usize, Event);

struct Line {
    outcome: Outcome,
    started_at: DateTime<Utc>,
}

pub fn simulate(
    flow: &ir::Flow,
    list: &[contacts::Contact],
    dialer: &SimDialer,
    start: DateTime<Utc>,
) -> Simulation {
    let n = list.len();
    let mut runs: Vec<Option<Run<'_>>> = (0..n).map(|_| None).collect();
    let mut pending: Vec<Option<Request>> = vec![None; n];
    let mut lines: Vec<Option<Line>> = (0..n).map(|_| None).collect();
    let mut results: Vec<Option<ContactResult>> = vec![None; n];
    let mut queue: BinaryHeap<Reverse<Scheduled>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<_>, at: DateTime<Utc>, i: usize, e: Event| {
        seq += 1;
        queue.push(Reverse((at, seq, i, e)));
    };
    for i in 0..n {
        push(&mut queue, start, i, Event::Due);
    }
    let concurrency = flow.concurrency.map(|c| c as usize);
    let rate = flow.rate.map(|r| {
        (
            r.count as usize,
            Duration::seconds(i64::from(r.per_seconds)),
        )
    });
    let mut in_flight: BinaryHeap<Reverse<DateTime<Utc>>> = BinaryHeap::new();
    let mut recent_dials: VecDeque<DateTime<Utc>> = VecDeque::new();
    let consent_required = flow.compliance.policies.iter().any(|p| p.require_consent);
    let mut finish = start;

    while let Some(Reverse((now, _, i, event))) = queue.pop() {
        finish = finish.max(now);
        let c = &list[i];
        let mut request = match event {
            Event::CallEnded => {
                in_flight.pop();
                let line = lines[i].take().expect("a call was in progress");
                let run = runs[i].as_mut().expect("a call belongs to a run");
                run.reply(Reply::Dialled {
                    outcome: line.outcome,
                    started_at: line.started_at,
                    ended_at: now,
                })
            }
            Event::Due => match runs[i].as_mut() {
                Some(_) => pending[i].take().expect("a due contact has a request"),
                None => {
                    if consent_required
                        && matches!(c.fields.get("consent"), Some(Value::Bool(false)))
                    {
                        results[i] = Some(result(
                            c,
                            0,
                            End {
                                completed: false,
                                reason: "no_consent".into(),
                                skipped: true,
                            },
                            None,
                        ));
                        continue;
                    }
                    let arm = interpreter::assign_arm(flow, &c.phone);
                    let contact = Contact {
                        phone: c.phone.clone(),
                        fields: c.fields.clone(),
                        zones: c.zones.clone(),
                    };
                    runs[i].insert(Run::new(flow, arm, contact, start)).start()
                }
            },
        };
        let run = runs[i].as_mut().expect("the run exists by now");
        loop {
            request = match request {
                Request::Done(end) => {
                    let arm = run.arm();
                    results[i] = Some(result(c, arm, end, Some(run)));
                    runs[i] = None;
                    break;
                }
                Request::Dial { at, .. } if at > now => {
                    pending[i] = Some(request);
                    push(&mut queue, at, i, Event::Due);
                    break;
                }
                Request::Dial {
                    number,
                    timeout_seconds,
                    detect_voicemail,
                    ..
                } => {
                    // Hard limits: a free line, and the pace of dialling.
                    let line_free = concurrency.is_none_or(|c| in_flight.len() < c);
                    while let (Some((_, period)), Some(first)) = (rate, recent_dials.front()) {
                        if now - *first >= period {
                            recent_dials.pop_front();
                        } else {
                            break;
                        }
                    }
                    let paced = rate.is_none_or(|(count, _)| recent_dials.len() < count);
                    if !line_free || !paced {
                        let free_at = if line_free {
                            now
                        } else {
                            in_flight.peek().map_or(now, |r| r.0)
                        };
                        let paced_at = match (rate, recent_dials.front()) {
                            (Some((_, period)), Some(first)) if !paced => *first + period,
                            _ => now,
                        };
                        let later = free_at.max(paced_at).max(now + Duration::milliseconds(1));
                        request = run.reschedule(later);
                        if let Request::Dial { at, .. } = &request {
                            pending[i] = Some(request.clone());
                            push(&mut queue, *at, i, Event::Due);
                            break;
                        }
                        continue;
                    }
                    let zone = c.zones.first().copied().unwrap_or(Tz::UTC);
                    let attempt = run.journal.attempts.len() as u32 + 1;
                    let call = Call {
                        contact: i,
                        attempt,
                        number: &number,
                        local: now.with_timezone(&zone).naive_local(),
                        timeout_seconds,
                        detect_voicemail,
                    };
                    let dialled = dialer.dial(&call);
                    let end = now + Duration::seconds(dialled.seconds.max(1) as i64);
                    in_flight.push(Reverse(end));
                    recent_dials.push_back(now);
                    lines[i] = Some(Line {
                        outcome: dialled.outcome,
                        started_at: now,
                    });
                    push(&mut queue, end, i, Event::CallEnded);
                    break;
                }
                Request::Gather { keys, attempt, .. } => {
                    let pressed =
                        dialer.gather(i, run.journal.attempts.len() as u32, attempt, &keys);
                    run.reply(Reply::Keys(pressed))
                }
                Request::Transfer { .. } => {
                    let outcome = dialer.transfer(i, run.journal.attempts.len() as u32);
                    run.reply(Reply::Transferred(outcome))
                }
            };
        }
    }
    let contacts = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                result(
                    &list[i],
                    0,
                    End {
                        completed: false,
                        reason: "not_run".into(),
                        skipped: true,
                    },
                    None,
                )
            })
        })
        .collect();
    Simulation {
        contacts,
        start,
        finish,
    }
}

fn result(c: &contacts::Contact, arm: ArmId, end: End, run: Option<&mut Run<'_>>) -> ContactResult {
    let journal = run
        .map(|r| std::mem::take(&mut r.journal))
        .unwrap_or_default();
    ContactResult {
        line: c.line,
        phone: c.phone.clone(),
        zone: c.zones.first().copied().unwrap_or(Tz::UTC),
        arm,
        end,
        attempts: journal.attempts,
        path: journal.path,
    }
}
