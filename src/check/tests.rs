//! Checking `test` items: the scripted contact against the schema, scripted
//! outcomes, and expectations that name steps and arms.

use std::collections::{BTreeMap, HashMap};

use super::diagnostics as diag;
use super::scope::Scope;
use super::types::{self, SchemaInfo};
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{self, Outcome};
use crate::source::Span;
use crate::syntax::ast::{self, TestEntry};

pub fn check_tests(
    scope: &Scope<'_>,
    schema: &SchemaInfo,
    flow: Option<&ir::Flow>,
    region: Option<phonenumber::country::Id>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<ir::Test> {
    scope
        .tests
        .iter()
        .map(|t| check_test(t, schema, flow, region, diags))
        .collect()
}

/// The experiment arm a test names, or a diagnostic.
fn arm_named(
    flow: Option<&ir::Flow>,
    arm: &ast::Ident,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::ArmId> {
    let found = flow.and_then(|f| f.arms.iter().position(|a| a.name == arm.node));
    if found.is_none() {
        let names: Vec<&str> = flow
            .map(|f| f.arms.iter().map(|a| a.name.as_str()).collect())
            .unwrap_or_default();
        diags.push(diag::unknown_name(
            Code::UnknownArm,
            "experiment arm",
            &arm.node,
            arm.span,
            &names,
        ));
    }
    found
}

fn check_test(
    t: &ast::Test,
    schema: &SchemaInfo,
    flow: Option<&ir::Flow>,
    region: Option<phonenumber::country::Id>,
    diags: &mut Vec<Diagnostic>,
) -> ir::Test {
    let mut test = ir::Test {
        name: t.name.node.clone(),
        contact: BTreeMap::new(),
        now: None,
        arm: None,
        script: Vec::new(),
        expectations: Vec::new(),
    };
    let mut contact_span: Option<Span> = None;
    for entry in &t.entries {
        match entry {
            TestEntry::Contact { span, fields } => {
                contact_span = Some(*span);
                let mut seen: HashMap<&str, Span> = HashMap::new();
                for (name, value) in fields {
                    if let Some(first) = seen.get(name.node.as_str()) {
                        diags.push(diag::duplicate(
                            "test contact field",
                            &name.node,
                            name.span,
                            *first,
                        ));
                        continue;
                    }
                    seen.insert(&name.node, name.span);
                    match schema.field(&name.node) {
                        None => {
                            diags.push(diag::unknown_field(&name.node, name.span, &schema.names()))
                        }
                        Some(ty) => {
                            if let Some(v) = types::literal_for_field(ty, value, region, diags) {
                                test.contact.insert(name.node.clone(), v);
                            }
                        }
                    }
                }
            }
            TestEntry::Arm(arm) => test.arm = arm_named(flow, arm, diags),
            TestEntry::Now(dt) => {
                types::check_datetime(&dt.node, diags);
                test.now = Some(types::local_datetime(&dt.node));
            }
            TestEntry::Dial {
                outcome,
                press,
                transfer,
                lasting,
                ..
            } => {
                let Some(o) =
                    Outcome::from_name(&outcome.node).filter(|o| *o != Outcome::Exhausted)
                else {
                    diags.push(diag::unknown_outcome(
                        &outcome.node,
                        outcome.span,
                        &Outcome::dial_names(),
                        "a dial",
                    ));
                    continue;
                };
                let transfer = match transfer {
                    Some(tr) => match ir::TransferOutcome::ALL
                        .iter()
                        .find(|x| x.name() == tr.node)
                    {
                        Some(x) => Some(*x),
                        None => {
                            diags.push(diag::unknown_outcome(
                                &tr.node,
                                tr.span,
                                &["answered", "failed", "hangup"],
                                "a transfer",
                            ));
                            None
                        }
                    },
                    None => None,
                };
                if let Some(p) = press {
                    if !p
                        .node
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                        || p.node.is_empty()
                    {
                        diags.push(diag::invalid_literal(
                            p.span,
                            "keys pressed are digits, `*` or `#`",
                            "write the keys such as \"1\" or \"42#\"",
                        ));
                    }
                }
                test.script.push(ir::ScriptedDial {
                    outcome: o,
                    press: press.as_ref().map(|p| p.node.clone()),
                    transfer,
                    lasting_seconds: lasting.as_ref().map_or(0, |l| l.node),
                });
            }
            TestEntry::ExpectAttemptAt { attempt, at, .. } => {
                types::check_datetime(&at.node, diags);
                if attempt.node == 0 {
                    diags.push(diag::invalid_value(
                        attempt.span,
                        "attempts are counted from 1",
                        "write `expect attempt 1 at …` for the first dial",
                    ));
                }
                test.expectations.push(ir::Expectation::AttemptAt {
                    attempt: attempt.node,
                    at: types::local_datetime(&at.node),
                });
            }
            TestEntry::ExpectAttempts(n) => test
                .expectations
                .push(ir::Expectation::Attempts { count: n.node }),
            TestEntry::ExpectEnd {
                completed, reason, ..
            } => test.expectations.push(ir::Expectation::End {
                completed: *completed,
                reason: reason.as_ref().map(|r| r.node.clone()),
            }),
            TestEntry::ExpectPath(steps) => {
                let mut ids = Vec::new();
                for s in steps {
                    match flow.and_then(|f| f.steps.iter().position(|x| x.name == s.node)) {
                        Some(i) => ids.push(i),
                        None => {
                            let names: Vec<&str> = flow
                                .map(|f| f.steps.iter().map(|x| x.name.as_str()).collect())
                                .unwrap_or_default();
                            diags.push(diag::unknown_name(
                                Code::UnknownStep,
                                "step",
                                &s.node,
                                s.span,
                                &names,
                            ));
                        }
                    }
                }
                test.expectations.push(ir::Expectation::Path { steps: ids });
            }
            TestEntry::ExpectSms(_, text) => test.expectations.push(ir::Expectation::Sms {
                text: text.as_ref().map(|t| t.node.clone()),
            }),
            TestEntry::ExpectEmail(_, text) => test.expectations.push(ir::Expectation::Email {
                text: text.as_ref().map(|t| t.node.clone()),
            }),
            TestEntry::ExpectFlag(label) => test.expectations.push(ir::Expectation::Flag {
                label: label.node.clone(),
            }),
            TestEntry::ExpectArm(arm) => {
                if let Some(arm) = arm_named(flow, arm, diags) {
                    test.expectations.push(ir::Expectation::Arm { arm });
                }
            }
            TestEntry::ExpectSkipped(_) => test.expectations.push(ir::Expectation::Skipped),
        }
    }
    let span = contact_span.unwrap_or(t.name.span);
    for required in &schema.required {
        if !test.contact.contains_key(required) && contact_span.is_some() {
            diags.push(diag::missing_field(required, span));
        }
    }
    if contact_span.is_none() && !schema.required.is_empty() {
        diags.push(diag::missing_field(&schema.required[0], t.name.span));
    }
    test
}
