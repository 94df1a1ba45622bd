//! Checking the program's items and its flow, and building the IR: settings,
//! experiment arms, steps and their routes.

mod routes;

use std::collections::HashMap;

use super::calendar::{self, PolicyInfo, PRESETS};
use super::diagnostics as diag;
use super::items::{check_schema, check_strategy};
use super::scope::Scope;
use super::types::{self, describe, Env, SchemaInfo, Vars};
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{self, Outcome, Type};
use crate::source::{Span, Spanned};
use crate::syntax::ast::{self, ActionKind, SettingKind, Target};

/// Checks every item in scope; builds the IR flow when there is one.
pub fn check_program(
    scope: &Scope<'_>,
    diags: &mut Vec<Diagnostic>,
) -> (Option<ir::Flow>, Vec<ir::Test>) {
    let region = scope.flow.and_then(|f| flow_region(f, diags));
    let (schema_info, schema) = check_schema(scope.schema, region, diags);
    let calendars: Vec<ir::Calendar> = scope
        .calendars
        .items
        .iter()
        .map(|c| calendar::build_calendar(c, diags))
        .collect();
    let strategies: Vec<ir::Strategy> = scope
        .strategies
        .items
        .iter()
        .map(|s| check_strategy(s, diags))
        .collect();
    let policies: Vec<PolicyInfo> = scope
        .compliances
        .items
        .iter()
        .map(|c| calendar::custom_policy(c, diags))
        .collect();
    let Some(flow) = scope.flow else {
        let tests = super::tests::check_tests(scope, &schema_info, None, region, diags);
        return (None, tests);
    };
    let mut checker = FlowChecker {
        scope,
        diags,
        schema: &schema_info,
        calendars,
        strategies,
        region,
        vars: Vars::default(),
        arms: Vec::new(),
        arm_names: Vec::new(),
        steps: HashMap::new(),
        retry_at: Vec::new(),
        dial_timeouts: Vec::new(),
        pre_pass: false,
    };
    let built = checker.flow(flow, schema, &policies);
    let tests =
        super::tests::check_tests(scope, &schema_info, built.as_ref(), region, checker.diags);
    (built, tests)
}

fn flow_region(flow: &ast::Flow, diags: &mut Vec<Diagnostic>) -> Option<phonenumber::country::Id> {
    flow.settings.iter().find_map(|s| match &s.kind {
        SettingKind::Region(r) => match r.node.parse::<phonenumber::country::Id>() {
            Ok(id) => Some(id),
            Err(_) => {
                diags.push(diag::invalid_literal(
                    r.span,
                    &format!("\"{}\" is not a region code", r.node),
                    "write a two-letter country code in capitals, such as \"US\", \"FR\" or \"GB\"",
                ));
                None
            }
        },
        _ => None,
    })
}

/// A `retry at` or `next day at` list and where it was written, for the calendar checks.
pub struct RetryAt {
    pub times: Vec<u16>,
    pub span: Span,
    /// The arms it applies under (all of them for a route's own `retry at`).
    pub arms: Vec<ir::ArmId>,
}

struct FlowChecker<'s, 'd> {
    scope: &'s Scope<'s>,
    diags: &'d mut Vec<Diagnostic>,
    schema: &'s SchemaInfo,
    calendars: Vec<ir::Calendar>,
    strategies: Vec<ir::Strategy>,
    region: Option<phonenumber::country::Id>,
    vars: Vars,
    arms: Vec<ir::Arm>,
    arm_names: Vec<String>,
    steps: HashMap<String, ir::StepId>,
    retry_at: Vec<RetryAt>,
    dial_timeouts: Vec<(u64, Span)>,
    /// Typing variables before the real pass: diagnostics are dropped.
    pre_pass: bool,
}

/// Where a block sits: which dial outcomes route to it, and whether an `if`
/// on `attempt` bounds it.
#[derive(Clone, Default)]
struct Ctx {
    route: Option<RouteOutcomes>,
    guarded: bool,
    narrowed: Vec<String>,
}

#[derive(Clone)]
enum RouteOutcomes {
    Listed(Vec<Outcome>),
    /// `on other`: what neither a listed route nor the arm's strategy covers.
    Other {
        listed: Vec<Outcome>,
        produced: Vec<Outcome>,
    },
}

impl<'s> FlowChecker<'s, '_> {
    fn flow(
        &mut self,
        flow: &'s ast::Flow,
        schema: ir::Schema,
        custom: &[PolicyInfo],
    ) -> Option<ir::Flow> {
        let settings = self.settings(flow);
        for (i, step) in flow.steps.iter().enumerate() {
            match self.steps.get(&step.name.node) {
                Some(&first) => {
                    let first_span = flow.steps[first].name.span;
                    self.diags.push(diag::duplicate(
                        "step",
                        &step.name.node,
                        step.name.span,
                        first_span,
                    ));
                }
                None => {
                    self.steps.insert(step.name.node.clone(), i);
                }
            }
        }
        if self.scope.schema.is_none() {
            self.diags.push(diag::missing_schema(flow.name.span));
        } else if schema.phone_field.is_none() {
            self.diags.push(diag::missing_phone_field(
                self.schema.span.unwrap_or(flow.name.span),
            ));
        }

        // Resolve the flow-wide settings.
        let calendar = settings.calendar.and_then(|c| self.calendar_ref(c));
        let strategy = settings.strategy.and_then(|s| self.strategy_ref(s));
        let mut policies: Vec<PolicyInfo> = Vec::new();
        for name in settings.compliance.iter().flat_map(|c| c.iter()) {
            if let Some(p) = PRESETS.iter().find(|p| p.name == name.node) {
                policies.push(calendar::preset_policy(p, name.span));
            } else if let Some(i) = self.scope.compliance(&name.node) {
                let info = &custom[i];
                policies.push(PolicyInfo {
                    ir: info.ir.clone(),
                    name_span: info.name_span,
                    quiet_span: info.quiet_span,
                    rolling_spans: info.rolling_spans.clone(),
                    ring_span: info.ring_span,
                });
            } else if !self.scope.is_broken(&name.node) {
                let names = self.scope.compliance_names();
                self.diags.push(diag::unknown_name(
                    Code::UnknownCompliance,
                    "compliance policy",
                    &name.node,
                    name.span,
                    &names,
                ));
            }
        }
        let caller_ids = settings
            .caller_id
            .map(|ids| self.phones(ids))
            .unwrap_or_default();
        self.build_arms(flow, strategy, calendar, &caller_ids);

        let entry = match settings.start_step {
            Some(name) => self.step_ref(name).unwrap_or(0),
            None => 0,
        };
        let syntax_errors = self.diags.iter().any(|d| d.code == Code::Syntax);
        if flow.steps.is_empty() && !syntax_errors {
            self.diags.push(
                Diagnostic::new(Code::StepWithoutEnd, "the flow has no step")
                    .primary(flow.name.span, "nothing to run")
                    .help("add a step such as `step call { dial contact.phone … }`"),
            );
        }
        let pause_when = settings.pause_when.and_then(|(step, times)| {
            if times.node == 0 {
                self.diags.push(diag::invalid_value(
                    times.span,
                    "the pause threshold must be at least 1",
                    "write a count such as `reached 50 times`",
                ));
            }
            Some(ir::PauseWhen {
                step: self.step_ref(step)?,
                times: times.node,
            })
        });

        // Variables: declare every name, then type their values until stable.
        for step in &flow.steps {
            declare_vars(&step.body, &mut self.vars);
        }
        if self.vars.types.iter().any(Option::is_none) {
            let real_diags = std::mem::take(self.diags);
            self.pre_pass = true;
            for _ in 0..3 {
                let typed_before = self.vars.types.iter().filter(|t| t.is_some()).count();
                for step in &flow.steps {
                    self.block(&step.body, &Ctx::default());
                }
                if self.vars.types.iter().filter(|t| t.is_some()).count() == typed_before {
                    break;
                }
            }
            self.pre_pass = false;
            *self.diags = real_diags;
        }

        // The step-graph analysis reads only the AST and what is resolved by
        // now, so it runs on another core while the steps are lowered to IR.
        let step_map = self.steps.clone();
        let (arms, strategies, var_index) = (
            self.arms.clone(),
            self.strategies.clone(),
            self.vars.index.clone(),
        );
        let (steps, mut analysis_diags) = std::thread::scope(|s| {
            let analysis = s.spawn(|| {
                let facts = super::analysis::Facts {
                    flow,
                    steps: &step_map,
                    entry,
                    arms: &arms,
                    strategies: &strategies,
                    vars: &var_index,
                };
                let mut diags = Vec::new();
                super::analysis::analyse(&facts, &mut diags);
                diags
            });
            let steps: Vec<ir::Step> = flow
                .steps
                .iter()
                .map(|s| ir::Step {
                    name: s.name.node.clone(),
                    actions: self.block(&s.body, &Ctx::default()),
                })
                .collect();
            (steps, analysis.join().expect("the analysis never panics"))
        });
        self.diags.append(&mut analysis_diags);

        let timing = super::timing::Timing {
            flow,
            calendars: &self.calendars,
            scope: self.scope,
            arms: &self.arms,
            policies: &policies,
            retry_at: &self.retry_at,
            dial_timeouts: &self.dial_timeouts,
            start: settings.start,
            stop: settings.stop,
            max_per_day: settings.max_per_day,
            schema: self.schema,
        };
        timing.check(self.diags);

        if settings.timezone.is_none() {
            self.diags.push(diag::no_zone(flow.name.span));
        }
        let timezone = settings
            .timezone
            .map(|z| self.zone_sources(z))
            .unwrap_or_default();
        Some(ir::Flow {
            name: flow.name.node.clone(),
            title: settings.title.map(|t| t.node.clone()),
            contact: schema,
            calendars: std::mem::take(&mut self.calendars),
            strategies: std::mem::take(&mut self.strategies),
            compliance: ir::Compliance {
                policies: policies.into_iter().map(|p| p.ir).collect(),
            },
            timezone,
            region: settings.region.map(|r| r.node.clone()),
            concurrency: settings.concurrency.map(|c| c.node),
            rate: settings.rate.map(|(count, per_seconds)| ir::Rate {
                count: count.node,
                per_seconds,
            }),
            max_attempts_per_day: settings.max_per_day.map(|m| m.node),
            start: settings.start.map(|s| types::local_datetime(&s.node)),
            stop: settings.stop.map(|s| types::local_datetime(&s.node)),
            pause_when,
            experiment: flow.experiments.first().map(|e| e.name.node.clone()),
            arms: std::mem::take(&mut self.arms),
            entry,
            steps,
            variables: self.vars.to_ir(),
        })
    }

    fn settings(&mut self, flow: &'s ast::Flow) -> Settings<'s> {
        let mut s = Settings::default();
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for setting in &flow.settings {
            let keyword = setting.kind.keyword();
            if let Some(first) = seen.get(keyword) {
                self.diags
                    .push(diag::duplicate_setting(keyword, setting.span, *first));
                continue;
            }
            seen.insert(keyword, setting.span);
            match &setting.kind {
                SettingKind::Title(t) => s.title = Some(t),
                SettingKind::Calendar(c) => s.calendar = Some(c),
                SettingKind::Timezone(z) => s.timezone = Some(z),
                SettingKind::Region(r) => s.region = Some(r),
                SettingKind::Strategy(x) => s.strategy = Some(x),
                SettingKind::Compliance(c) => s.compliance = Some(c),
                SettingKind::CallerId(ids) => s.caller_id = Some(ids),
                SettingKind::Concurrency(c) => {
                    self.at_least_one(c, "concurrency");
                    s.concurrency = Some(c);
                }
                SettingKind::Rate { count, per_seconds } => {
                    self.at_least_one(count, "rate");
                    s.rate = Some((count, *per_seconds));
                }
                SettingKind::MaxPerDay(m) => {
                    self.at_least_one(m, "max attempts per day");
                    s.max_per_day = Some(m);
                }
                SettingKind::StartStep(name) => s.start_step = Some(name),
                SettingKind::Start(dt) => {
                    types::check_datetime(&dt.node, self.diags);
                    s.start = Some(dt);
                }
                SettingKind::Stop(dt) => {
                    types::check_datetime(&dt.node, self.diags);
                    s.stop = Some(dt);
                }
                SettingKind::PauseWhen { step, times } => s.pause_when = Some((step, times)),
            }
        }
        if let (Some(start), Some(stop)) = (s.start, s.stop) {
            if stop.node.local <= start.node.local && stop.node.zone == start.node.zone {
                self.diags.push(
                    diag::invalid_value(
                        stop.span,
                        "the campaign stops before it starts",
                        "set `stop` after `start`",
                    )
                    .secondary(start.span, "the start"),
                );
            }
        }
        for extra in flow.experiments.iter().skip(1) {
            self.diags.push(diag::duplicate_setting(
                "experiment",
                extra.name.span,
                flow.experiments[0].name.span,
            ));
        }
        s
    }

    fn at_least_one(&mut self, n: &Spanned<u32>, what: &str) {
        if n.node == 0 {
            self.diags.push(diag::invalid_value(
                n.span,
                &format!("`{what}` must be at least 1"),
                "a value of zero would never call anyone",
            ));
        }
    }

    fn calendar_ref(&mut self, name: &Spanned<String>) -> Option<ir::CalendarId> {
        let found = self.scope.calendar(&name.node);
        if found.is_none() && !self.scope.is_broken(&name.node) {
            let names = self.scope.calendar_names();
            self.diags.push(diag::unknown_name(
                Code::UnknownCalendar,
                "calendar",
                &name.node,
                name.span,
                &names,
            ));
        }
        found
    }

    fn strategy_ref(&mut self, name: &Spanned<String>) -> Option<ir::StrategyId> {
        let found = self.scope.strategy(&name.node);
        if found.is_none() && !self.scope.is_broken(&name.node) {
            let names = self.scope.strategy_names();
            self.diags.push(diag::unknown_name(
                Code::UnknownStrategy,
                "strategy",
                &name.node,
                name.span,
                &names,
            ));
        }
        found
    }

    fn step_ref(&mut self, name: &Spanned<String>) -> Option<ir::StepId> {
        let found = self.steps.get(&name.node).copied();
        if found.is_none() && !self.pre_pass && !self.scope.is_broken(&name.node) {
            let names: Vec<&str> = self.steps.keys().map(String::as_str).collect();
            self.diags.push(diag::unknown_name(
                Code::UnknownStep,
                "step",
                &name.node,
                name.span,
                &names,
            ));
        }
        found
    }

    fn phones(&mut self, ids: &[Spanned<String>]) -> Vec<String> {
        ids.iter()
            .filter_map(|n| types::check_phone(&n.node, n.span, self.region, self.diags))
            .collect()
    }

    fn zone_sources(&mut self, sources: &[ast::ZoneSource]) -> Vec<ir::ZoneSource> {
        let mut out = Vec::new();
        for src in sources {
            match src {
                ast::ZoneSource::Field(f) => match self.schema.field(&f.node) {
                    Some(t)
                        if matches!(t, Type::Timezone)
                            || *t == Type::Optional(Box::new(Type::Timezone)) =>
                    {
                        out.push(ir::ZoneSource::Field(f.node.clone()))
                    }
                    Some(t) => self.diags.push(diag::type_mismatch(
                        f.span,
                        "a timezone field",
                        &describe(t),
                    )),
                    None => {
                        self.diags
                            .push(diag::unknown_field(&f.node, f.span, &self.schema.names()))
                    }
                },
                ast::ZoneSource::Phone(_) => out.push(ir::ZoneSource::Phone),
                ast::ZoneSource::Literal(z) => {
                    if types::check_zone(&z.node, z.span, self.diags).is_some() {
                        out.push(ir::ZoneSource::Zone(z.node.clone()));
                    }
                }
                ast::ZoneSource::Invalid(i) => self.diags.push(diag::bad_zone_source(i.span)),
            }
        }
        out
    }

    fn build_arms(
        &mut self,
        flow: &ast::Flow,
        strategy: Option<usize>,
        calendar: Option<usize>,
        caller_ids: &[String],
    ) {
        let Some(exp) = flow.experiments.first() else {
            self.arms.push(ir::Arm {
                name: "default".into(),
                weight_percent: 100.0,
                strategy,
                calendar,
                caller_ids: caller_ids.to_vec(),
            });
            self.arm_names = vec!["default".into()];
            return;
        };
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut total = 0.0;
        for arm in &exp.arms {
            if let Some(first) = seen.get(arm.name.node.as_str()) {
                self.diags.push(diag::duplicate(
                    "experiment arm",
                    &arm.name.node,
                    arm.name.span,
                    *first,
                ));
                continue;
            }
            seen.insert(&arm.name.node, arm.name.span);
            total += arm.weight.node;
            let mut resolved = ir::Arm {
                name: arm.name.node.clone(),
                weight_percent: arm.weight.node,
                strategy,
                calendar,
                caller_ids: caller_ids.to_vec(),
            };
            for o in &arm.overrides {
                match &o.kind {
                    SettingKind::Strategy(s) => resolved.strategy = self.strategy_ref(s),
                    SettingKind::Calendar(c) => resolved.calendar = self.calendar_ref(c),
                    SettingKind::CallerId(ids) => resolved.caller_ids = self.phones(ids),
                    _ => {}
                }
            }
            self.arms.push(resolved);
        }
        if (total - 100.0).abs() > 1e-9 && !exp.arms.is_empty() {
            self.diags.push(diag::arm_weights(exp.name.span, total));
        }
        if exp.arms.is_empty() {
            self.diags.push(diag::arm_weights(exp.name.span, 0.0));
        }
        self.arm_names = self.arms.iter().map(|a| a.name.clone()).collect();
    }

    fn typed<T>(
        &mut self,
        ctx: &Ctx,
        f: impl FnOnce(&mut Env<'_>, &mut Vec<Diagnostic>) -> Option<T>,
    ) -> Option<T> {
        let mut scratch = Vec::new();
        let env_schema = self.schema;
        let mut env = Env {
            schema: env_schema,
            vars: &self.vars,
            arms: &self.arm_names,
            region: self.region,
            narrowed: ctx.narrowed.clone(),
        };
        let out = f(&mut env, &mut scratch);
        if !self.pre_pass {
            self.diags.append(&mut scratch);
        }
        out
    }

    fn report(&mut self, d: Diagnostic) {
        if !self.pre_pass {
            self.diags.push(d);
        }
    }

    // ------------------------------------------------------------ blocks

    fn block(&mut self, b: &ast::Block, ctx: &Ctx) -> Vec<ir::Action> {
        let mut out = Vec::new();
        let mut terminator: Option<(&'static str, Span)> = None;
        let mut routed_action: Option<usize> = None;
        for (i, action) in b.actions.iter().enumerate() {
            if let Some((what, span)) = terminator {
                self.report(diag::after_terminator(action.span, what, span));
                break;
            }
            terminator = match &action.kind {
                ActionKind::Dial { .. } => Some(("dial", action.span)),
                ActionKind::Transfer { .. } => Some(("transfer", action.span)),
                ActionKind::Gather { .. } => Some(("gather", action.span)),
                ActionKind::Goto(_) => Some(("goto", action.span)),
                ActionKind::End { .. } => Some(("end", action.span)),
                ActionKind::Retry { .. } => Some(("retry", action.span)),
                _ => None,
            };
            if matches!(
                action.kind,
                ActionKind::Dial { .. } | ActionKind::Transfer { .. }
            ) {
                routed_action = Some(i);
            }
            if let Some(a) = self.action(action, &b.routes, ctx) {
                out.push(a);
            }
        }
        if routed_action.is_none() {
            if let Some(r) = b.routes.first() {
                self.report(diag::routes_without_dial(r.span));
            }
        }
        out
    }

    fn target(&mut self, t: &Target, ctx: &Ctx) -> Vec<ir::Action> {
        match t {
            Target::Step(name) => self
                .step_ref(name)
                .map(|step| vec![ir::Action::Goto { step }])
                .unwrap_or_default(),
            Target::Block(b) => self.block(b, ctx),
        }
    }

    fn action(&mut self, a: &ast::Action, routes: &[ast::Route], ctx: &Ctx) -> Option<ir::Action> {
        Some(match &a.kind {
            ActionKind::Dial {
                number,
                timeout,
                detect_voicemail,
                from,
            } => {
                let number = self.typed(ctx, |env, d| env.phone(number, d));
                let timeout_seconds = timeout.as_ref().map_or(30, |t| t.node);
                if let Some(t) = timeout {
                    if !self.pre_pass {
                        self.dial_timeouts.push((t.node, t.span));
                    }
                    if t.node == 0 {
                        self.report(diag::invalid_value(
                            t.span,
                            "a dial must ring for some time",
                            "write a timeout such as `30s`",
                        ));
                    }
                }
                let from = from.as_ref().and_then(|f| {
                    let mut scratch = Vec::new();
                    let r = types::check_phone(&f.node, f.span, self.region, &mut scratch);
                    scratch.into_iter().for_each(|d| self.report(d));
                    r
                });
                let (blocks, routing) =
                    self.dial_routes(a.span, detect_voicemail.is_some(), routes, ctx);
                ir::Action::Dial(ir::Dial {
                    number: number?,
                    timeout_seconds,
                    detect_voicemail: detect_voicemail.is_some(),
                    from,
                    blocks,
                    routing,
                })
            }
            ActionKind::Say(s) => ir::Action::Say {
                text: self.typed(ctx, |env, d| env.template(s, d))?,
            },
            ActionKind::Play(f) => ir::Action::Play {
                file: f.node.clone(),
            },
            ActionKind::Gather {
                digits,
                timeout,
                tries,
                arms,
            } => self.gather(a.span, digits, timeout, tries, arms, ctx)?,
            ActionKind::Record { max, name } => {
                let var = self.vars.declare(&name.node);
                self.vars
                    .assign(var, Type::Text, name.span, &mut Vec::new());
                ir::Action::Record {
                    max_seconds: max.as_ref().map(|m| m.node),
                    var,
                }
            }
            ActionKind::Transfer { number, timeout } => {
                let number = self.typed(ctx, |env, d| env.phone(number, d));
                let transfer = self.transfer_routes(a.span, routes, ctx);
                ir::Action::Transfer(ir::Transfer {
                    number: number?,
                    timeout_seconds: timeout.as_ref().map_or(30, |t| t.node),
                    answered: transfer[0].clone(),
                    failed: transfer[1].clone(),
                    hangup: transfer[2].clone(),
                })
            }
            ActionKind::Set { name, value } => {
                let value = self.typed(ctx, |env, d| env.value(value, d))?;
                let var = self.vars.declare(&name.node);
                let mut scratch = Vec::new();
                self.vars
                    .assign(var, value.ty.clone(), name.span, &mut scratch);
                scratch.into_iter().for_each(|d| self.report(d));
                ir::Action::Set { var, value }
            }
            ActionKind::SendSms(s) => ir::Action::SendSms {
                text: self.typed(ctx, |env, d| env.template(s, d))?,
            },
            ActionKind::SendEmail { body, subject } => {
                let body = self.typed(ctx, |env, d| env.template(body, d));
                let subject = match subject {
                    Some(s) => Some(self.typed(ctx, |env, d| env.template(s, d))?),
                    None => None,
                };
                ir::Action::SendEmail {
                    body: body?,
                    subject,
                }
            }
            ActionKind::Flag(l) => ir::Action::Flag {
                label: l.node.clone(),
            },
            ActionKind::OptOut => ir::Action::OptOut,
            ActionKind::Wait(d) => {
                if d.node == 0 {
                    self.report(diag::invalid_value(
                        d.span,
                        "`wait` needs a duration above zero",
                        "write a duration such as `1h`",
                    ));
                }
                ir::Action::Wait { seconds: d.node }
            }
            ActionKind::If {
                cond,
                then,
                otherwise,
            } => {
                let c = self.typed(ctx, |env, d| env.condition(cond, d));
                let mut inner = ctx.clone();
                inner.guarded |= mentions_attempt(cond);
                inner.narrowed.extend(types::narrowed_by(cond));
                let then = self.block(then, &inner);
                let mut else_ctx = ctx.clone();
                else_ctx.guarded = inner.guarded;
                let otherwise = otherwise
                    .as_ref()
                    .map(|o| self.block(o, &else_ctx))
                    .unwrap_or_default();
                ir::Action::If {
                    cond: c?,
                    then,
                    otherwise,
                }
            }
            ActionKind::Goto(name) => ir::Action::Goto {
                step: self.step_ref(name)?,
            },
            ActionKind::Retry { form, max } => self.retry(a.span, form, max, ctx)?,
            ActionKind::End { completed, reason } => ir::Action::End {
                completed: *completed,
                reason: reason.as_ref().map(|r| r.node.clone()),
            },
        })
    }
}

#[derive(Default)]
struct Settings<'a> {
    title: Option<&'a Spanned<String>>,
    calendar: Option<&'a Spanned<String>>,
    timezone: Option<&'a [ast::ZoneSource]>,
    region: Option<&'a Spanned<String>>,
    strategy: Option<&'a Spanned<String>>,
    compliance: Option<&'a [Spanned<String>]>,
    caller_id: Option<&'a [Spanned<String>]>,
    concurrency: Option<&'a Spanned<u32>>,
    rate: Option<(&'a Spanned<u32>, u32)>,
    max_per_day: Option<&'a Spanned<u32>>,
    start_step: Option<&'a Spanned<String>>,
    start: Option<&'a Spanned<ast::DateTime>>,
    stop: Option<&'a Spanned<ast::DateTime>>,
    pause_when: Option<(&'a Spanned<String>, &'a Spanned<u32>)>,
}

/// Declares every variable a block sets, so reads anywhere can resolve.
fn declare_vars(b: &ast::Block, vars: &mut Vars) {
    let targets = b.routes.iter().map(|r| &r.target);
    for a in &b.actions {
        match &a.kind {
            ActionKind::Set { name, .. } => {
                vars.declare(&name.node);
            }
            // Recordings and keys pressed are text: known before any typing.
            ActionKind::Record { name, .. } => {
                let id = vars.declare(&name.node);
                vars.types[id].get_or_insert(Type::Text);
            }
            ActionKind::Gather { arms, .. } => {
                let id = vars.declare("digits");
                vars.types[id].get_or_insert(Type::Text);
                for arm in arms {
                    if let Target::Block(b) = &arm.target {
                        declare_vars(b, vars);
                    }
                }
            }
            ActionKind::If {
                then, otherwise, ..
            } => {
                declare_vars(then, vars);
                if let Some(o) = otherwise {
                    declare_vars(o, vars);
                }
            }
            _ => {}
        }
    }
    for t in targets {
        if let Target::Block(b) = t {
            declare_vars(b, vars);
        }
    }
}

/// Whether a condition reads `attempt`: such an `if` bounds what it guards.
pub(super) fn mentions_attempt(e: &ast::Expr) -> bool {
    use ast::ExprKind as K;
    match &e.kind {
        K::Name(n) => n.node == "attempt",
        K::Unary(_, x) | K::IsSet(x) => mentions_attempt(x),
        K::Binary(_, l, r) => mentions_attempt(l) || mentions_attempt(r),
        K::List(items) => items.iter().any(mentions_attempt),
        _ => false,
    }
}
