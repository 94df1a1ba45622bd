//! Lowering `test` items.

use pest::iterators::Pair;

use super::{kids, Lower};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

impl Lower {
    pub(super) fn test(&mut self, pair: Pair<'_, Rule>) -> Test {
        let span = self.span(&pair);
        let mut inner = kids(pair);
        let name = self.plain_string(inner.next().expect("test name"));
        let mut entries = Vec::new();
        for entry in inner {
            let espan = self.span(&entry);
            let rule = entry.as_rule();
            let mut parts = kids(entry);
            entries.push(match rule {
                Rule::test_contact => {
                    let fields = parts
                        .map(|f| {
                            let mut fp = kids(f);
                            let name = self.ident(fp.next().expect("field name"));
                            (name, self.literal(fp.next().expect("field value")))
                        })
                        .collect();
                    TestEntry::Contact {
                        span: espan,
                        fields,
                    }
                }
                Rule::test_now => TestEntry::Now(self.datetime(parts.next().expect("now"))),
                Rule::test_arm => TestEntry::Arm(self.ident(parts.next().expect("arm"))),
                Rule::test_dial => {
                    let outcome = self.ident(parts.next().expect("outcome"));
                    let (mut press, mut transfer, mut lasting) = (None, None, None);
                    for p in parts {
                        match p.as_rule() {
                            Rule::press => {
                                press =
                                    Some(self.plain_string(p.into_inner().next().expect("digits")))
                            }
                            Rule::transfer_outcome => {
                                transfer = Some(
                                    self.ident(p.into_inner().next().expect("transfer outcome")),
                                )
                            }
                            _ => {
                                lasting =
                                    Some(self.duration(p.into_inner().next().expect("lasting")))
                            }
                        }
                    }
                    TestEntry::Dial {
                        span: espan,
                        outcome,
                        press,
                        transfer,
                        lasting,
                    }
                }
                Rule::expect_attempt_at => {
                    let attempt = self.integer(parts.next().expect("attempt"));
                    TestEntry::ExpectAttemptAt {
                        span: espan,
                        attempt,
                        at: self.datetime(parts.next().expect("at")),
                    }
                }
                Rule::expect_attempts => {
                    TestEntry::ExpectAttempts(self.integer(parts.next().expect("count")))
                }
                Rule::expect_end => {
                    let completed = parts.next().expect("kind").as_str() == "completed";
                    let reason = parts.next().map(|r| self.plain_string(r));
                    TestEntry::ExpectEnd {
                        span: espan,
                        completed,
                        reason,
                    }
                }
                Rule::expect_path => TestEntry::ExpectPath(parts.map(|p| self.ident(p)).collect()),
                Rule::expect_sms => {
                    TestEntry::ExpectSms(espan, parts.next().map(|s| self.plain_string(s)))
                }
                Rule::expect_email => {
                    TestEntry::ExpectEmail(espan, parts.next().map(|s| self.plain_string(s)))
                }
                Rule::expect_flag => {
                    TestEntry::ExpectFlag(self.plain_string(parts.next().expect("flag")))
                }
                Rule::expect_arm => TestEntry::ExpectArm(self.ident(parts.next().expect("arm"))),
                _ => TestEntry::ExpectSkipped(espan),
            });
        }
        Test {
            name,
            span,
            entries,
        }
    }
}
