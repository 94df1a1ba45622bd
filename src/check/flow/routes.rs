//! Routes: what each outcome of a dial, a transfer or a gather leads to, per
//! experiment arm, and the `retry` actions inside dial routes.

use std::collections::{BTreeMap, HashMap};

use super::{Ctx, FlowChecker, RetryAt, RouteOutcomes};
use crate::check::diagnostics as diag;
use crate::check::items::retry_form;
use crate::ir::{self, Outcome, Type};
use crate::source::{Span, Spanned};
use crate::syntax::ast;

impl FlowChecker<'_, '_> {
    pub(super) fn retry(
        &mut self,
        span: Span,
        form: &Option<Spanned<ast::RetryForm>>,
        max: &Option<Spanned<u32>>,
        ctx: &Ctx,
    ) -> Option<ir::Action> {
        let Some(route) = &ctx.route else {
            self.report(diag::retry_outside_dial(span));
            return None;
        };
        let Some(form) = form else {
            // A bare retry follows the arm's strategy rule for each outcome routed here.
            for (arm_id, arm) in self.arms.iter().enumerate() {
                let strategy = arm.strategy.map(|s| &self.strategies[s]);
                let has_rule = |o: &Outcome| {
                    strategy.is_some_and(|s| {
                        matches!(s.rules.get(o), Some(ir::StrategyRule::Retry { .. }))
                    })
                };
                let outcomes: Vec<Outcome> = match route {
                    RouteOutcomes::Listed(list) => list.clone(),
                    RouteOutcomes::Other { listed, produced } => produced
                        .iter()
                        .filter(|o| {
                            !listed.contains(o)
                                && !strategy.is_some_and(|s| s.rules.contains_key(o))
                        })
                        .copied()
                        .collect(),
                };
                let missing: Vec<&str> = outcomes
                    .iter()
                    .filter(|o| !has_rule(o))
                    .map(|o| o.name())
                    .collect();
                if !missing.is_empty() {
                    let arm_name = (self.arms.len() > 1).then(|| self.arm_names[arm_id].as_str());
                    let d = diag::bare_retry_without_rule(
                        span,
                        &missing,
                        strategy.map(|s| s.name.as_str()),
                        arm_name,
                    );
                    self.report(d);
                    break;
                }
            }
            return Some(ir::Action::Retry {
                form: None,
                max: max.as_ref().map(|m| m.node),
            });
        };
        let mut scratch = Vec::new();
        let form_ir = retry_form(form, &mut scratch);
        scratch.into_iter().for_each(|d| self.report(d));
        let bounded = max.is_some()
            || ctx.guarded
            || self.arms.iter().all(|a| {
                a.strategy
                    .is_some_and(|s| self.strategies[s].max_attempts.is_some())
            });
        if !bounded {
            self.report(diag::unbounded_retry(span, None));
        }
        if let (ast::RetryForm::At(times) | ast::RetryForm::NextDayAt(times), false) =
            (&form.node, self.pre_pass)
        {
            self.retry_at.push(RetryAt {
                times: times.iter().map(|t| t.node).collect(),
                span: form.span,
                arms: (0..self.arms.len()).collect(),
            });
        }
        Some(ir::Action::Retry {
            form: Some(form_ir?),
            max: max.as_ref().map(|m| m.node),
        })
    }

    /// The routes of a dial: each `on` line's body, then per arm which
    /// route, strategy rule or default every outcome takes.
    pub(super) fn dial_routes(
        &mut self,
        dial_span: Span,
        detect: bool,
        routes: &[ast::Route],
        ctx: &Ctx,
    ) -> (Vec<Vec<ir::Action>>, Vec<BTreeMap<Outcome, ir::Resolution>>) {
        // Every dial outcome, and the routing-only `exhausted` and `other`.
        let allowed: Vec<&str> = Outcome::dial_names()
            .into_iter()
            .chain(["exhausted", "other"])
            .collect();
        let produced: Vec<Outcome> = Outcome::DIAL
            .into_iter()
            .filter(|o| *o != Outcome::Unknown && (detect || *o != Outcome::Voicemail))
            .collect();
        let mut explicit: BTreeMap<Outcome, usize> = BTreeMap::new();
        // Few outcomes per dial: a list beats a hash map here.
        let mut first: Vec<(&str, Span)> = Vec::new();
        let mut other: Option<usize> = None;
        // Outcomes of each route, resolved first so that `other` knows what is listed.
        let mut per_route: Vec<Vec<Outcome>> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let mut list = Vec::new();
            for o in &r.outcomes {
                if let Some((_, f)) = first.iter().find(|(n, _)| *n == o.node) {
                    self.report(diag::route_twice(&o.node, o.span, *f));
                    continue;
                }
                first.push((&o.node, o.span));
                if o.node == "other" {
                    other = Some(i);
                    continue;
                }
                match Outcome::from_name(&o.node) {
                    Some(Outcome::Voicemail) if !detect => {
                        self.report(diag::voicemail_without_detection(o.span, dial_span))
                    }
                    Some(outcome) => {
                        explicit.insert(outcome, i);
                        list.push(outcome);
                    }
                    None => self.report(diag::unknown_outcome(&o.node, o.span, &allowed, "a dial")),
                }
            }
            per_route.push(list);
        }
        let listed: Vec<Outcome> = explicit.keys().copied().collect();
        let blocks: Vec<Vec<ir::Action>> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let outcomes = if other == Some(i) {
                    RouteOutcomes::Other {
                        listed: listed.clone(),
                        produced: produced.clone(),
                    }
                } else {
                    RouteOutcomes::Listed(per_route[i].clone())
                };
                let route_ctx = Ctx {
                    route: Some(outcomes),
                    guarded: ctx.guarded,
                    narrowed: ctx.narrowed.clone(),
                };
                self.target(&r.target, &route_ctx)
            })
            .collect();

        let mut routing = Vec::new();
        let mut missing_by_arm: Vec<(usize, Vec<&'static str>)> = Vec::new();
        for (arm_id, arm) in self.arms.iter().enumerate() {
            let strategy = arm.strategy.map(|s| &self.strategies[s]);
            let mut table = BTreeMap::new();
            let mut missing = Vec::new();
            for o in &produced {
                let res = if let Some(&i) = explicit.get(o) {
                    ir::Resolution::Block(i)
                } else if strategy.is_some_and(|s| s.rules.contains_key(o)) {
                    ir::Resolution::Strategy
                } else if let Some(i) = other {
                    ir::Resolution::Block(i)
                } else {
                    missing.push(o.name());
                    continue;
                };
                table.insert(*o, res);
            }
            for o in [Outcome::Unknown, Outcome::Exhausted] {
                let res = match explicit.get(&o) {
                    Some(&i) => ir::Resolution::Block(i),
                    None if o == Outcome::Unknown
                        && strategy.is_some_and(|s| s.rules.contains_key(&o)) =>
                    {
                        ir::Resolution::Strategy
                    }
                    None => ir::Resolution::Default,
                };
                table.insert(o, res);
            }
            if !missing.is_empty() {
                missing_by_arm.push((arm_id, missing));
            }
            routing.push(table);
        }
        let all_same = missing_by_arm.len() == self.arms.len()
            && missing_by_arm.windows(2).all(|w| w[0].1 == w[1].1);
        if all_same {
            if let Some((_, missing)) = missing_by_arm.first() {
                self.report(diag::missing_routes(dial_span, "dial", missing, None));
            }
        } else {
            for (arm_id, missing) in &missing_by_arm {
                let name = self.arm_names[*arm_id].clone();
                self.report(diag::missing_routes(
                    dial_span,
                    "dial",
                    missing,
                    Some(&name),
                ));
            }
        }
        (blocks, routing)
    }

    /// The three bodies of a transfer: answered, failed, hangup.
    pub(super) fn transfer_routes(
        &mut self,
        span: Span,
        routes: &[ast::Route],
        ctx: &Ctx,
    ) -> [Vec<ir::Action>; 3] {
        const ALLOWED: &[&str] = &["answered", "failed", "hangup", "other"];
        let mut bodies: [Option<Vec<ir::Action>>; 3] = [None, None, None];
        let mut other: Option<Vec<ir::Action>> = None;
        let mut first: HashMap<&str, Span> = HashMap::new();
        for r in routes {
            let mut slots = Vec::new();
            let mut is_other = false;
            for o in &r.outcomes {
                if let Some(f) = first.get(o.node.as_str()) {
                    self.report(diag::route_twice(&o.node, o.span, *f));
                    continue;
                }
                first.insert(&o.node, o.span);
                match ir::TransferOutcome::ALL
                    .iter()
                    .position(|t| t.name() == o.node)
                {
                    Some(i) => slots.push(i),
                    None if o.node == "other" => is_other = true,
                    None => self.report(diag::unknown_outcome(
                        &o.node,
                        o.span,
                        ALLOWED,
                        "a transfer",
                    )),
                }
            }
            let body = self.target(
                &r.target,
                &Ctx {
                    route: None,
                    ..ctx.clone()
                },
            );
            for i in slots {
                bodies[i] = Some(body.clone());
            }
            if is_other {
                other = Some(body);
            }
        }
        let missing: Vec<&str> = (0..3)
            .filter(|i| bodies[*i].is_none() && other.is_none())
            .map(|i| ir::TransferOutcome::ALL[i].name())
            .collect();
        if !missing.is_empty() {
            self.report(diag::missing_routes(span, "transfer", &missing, None));
        }
        bodies.map(|b| b.or_else(|| other.clone()).unwrap_or_default())
    }

    pub(super) fn gather(
        &mut self,
        span: Span,
        digits: &Spanned<u32>,
        timeout: &Option<Spanned<u64>>,
        tries: &Option<Spanned<u32>>,
        arms: &[ast::GatherArm],
        ctx: &Ctx,
    ) -> Option<ir::Action> {
        if digits.node == 0 || digits.node > 32 {
            self.report(diag::invalid_value(
                digits.span,
                "a gather collects between 1 and 32 digits",
                "write a count such as `gather 1 digit`",
            ));
        }
        if let Some(t) = tries.as_ref().filter(|t| t.node == 0) {
            self.report(diag::invalid_value(
                t.span,
                "`tries` must be at least 1",
                "write `tries 1` or more",
            ));
        }
        let digits_var = self.vars.declare("digits");
        self.vars
            .assign(digits_var, Type::Text, span, &mut Vec::new());
        let inner = Ctx {
            route: None,
            ..ctx.clone()
        };
        let mut keys: Vec<(String, Vec<ir::Action>)> = Vec::new();
        let (mut on_timeout, mut on_invalid, mut other) = (None, None, None);
        let mut first: Vec<(&str, Span)> = Vec::new();
        for arm in arms {
            let body = self.target(&arm.target, &inner);
            for key in &arm.keys {
                let label = match &key.node {
                    ast::GatherKey::Digits(d) | ast::GatherKey::Unknown(d) => d.as_str(),
                    ast::GatherKey::Timeout => "timeout",
                    ast::GatherKey::Invalid => "invalid",
                    ast::GatherKey::Other => "other",
                };
                if let Some((_, f)) = first.iter().find(|(n, _)| *n == label) {
                    self.report(diag::route_twice(label, key.span, *f));
                    continue;
                }
                first.push((label, key.span));
                match &key.node {
                    ast::GatherKey::Digits(d) => {
                        let valid = d
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
                        if !valid || d.chars().count() != digits.node as usize {
                            self.report(diag::invalid_value(
                                key.span,
                                &format!("\"{d}\" can never be pressed: this gather collects {} digit(s)", digits.node),
                                "list keys of exactly that many digits (0-9, * or #)",
                            ));
                        }
                        keys.push((d.clone(), body.clone()));
                    }
                    ast::GatherKey::Timeout => on_timeout = Some(body.clone()),
                    ast::GatherKey::Invalid => on_invalid = Some(body.clone()),
                    ast::GatherKey::Other => other = Some(body.clone()),
                    ast::GatherKey::Unknown(u) => self.report(diag::unknown_outcome(
                        u,
                        key.span,
                        &["timeout", "invalid", "other"],
                        "a gather",
                    )),
                }
            }
        }
        let mut missing = Vec::new();
        if on_timeout.is_none() && other.is_none() {
            missing.push("timeout");
        }
        if on_invalid.is_none() && other.is_none() {
            missing.push("invalid");
        }
        if !missing.is_empty() {
            self.report(diag::missing_routes(span, "gather", &missing, None));
        }
        Some(ir::Action::Gather(ir::Gather {
            digits: digits.node,
            timeout_seconds: timeout.as_ref().map_or(5, |t| t.node),
            tries: tries.as_ref().map_or(1, |t| t.node),
            keys,
            on_timeout: on_timeout.or_else(|| other.clone()).unwrap_or_default(),
            on_invalid: on_invalid.or(other).unwrap_or_default(),
        }))
    }
}
