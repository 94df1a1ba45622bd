//! Checking the program's items and its flow, and building the IR: settings,
//! experiment arms, steps and their routes.

use std::collections::{BTreeMap, HashMap};

use super::calendar::{self, PolicyInfo, PRESETS};
use super::diagnostics as diag;
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
        .iter()
        .map(|c| calendar::build_calendar(c, diags))
        .collect();
    let strategies: Vec<ir::Strategy> = scope
        .strategies
        .iter()
        .map(|s| check_strategy(s, diags))
        .collect();
    let policies: Vec<PolicyInfo> = scope
        .compliances
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

fn field_type(decl: &ast::FieldDecl, diags: &mut Vec<Diagnostic>) -> Option<Type> {
    Some(match &decl.ty {
        ast::TypeExpr::Enum(_, values) => {
            let mut seen: Vec<&Spanned<String>> = Vec::new();
            for v in values {
                match seen.iter().find(|s| s.node == v.node) {
                    Some(first) => {
                        diags.push(diag::duplicate("enum value", &v.node, v.span, first.span))
                    }
                    None => seen.push(v),
                }
            }
            Type::Enum(seen.iter().map(|v| v.node.clone()).collect())
        }
        ast::TypeExpr::Named(name) => match name.node.as_str() {
            "text" => Type::Text,
            "number" => Type::Number,
            "bool" => Type::Bool,
            "date" => Type::Date,
            "datetime" => Type::Datetime,
            "duration" => Type::Duration,
            "phone" => Type::Phone,
            "timezone" => Type::Timezone,
            other => {
                diags.push(diag::unknown_type(other, name.span));
                return None;
            }
        },
    })
}

fn check_schema(
    schema: Option<&ast::Schema>,
    region: Option<phonenumber::country::Id>,
    diags: &mut Vec<Diagnostic>,
) -> (SchemaInfo, ir::Schema) {
    let mut info = SchemaInfo {
        fields: Vec::new(),
        span: schema.map(|s| s.span),
        required: Vec::new(),
    };
    let mut fields = Vec::new();
    for decl in schema.map(|s| s.fields.as_slice()).unwrap_or_default() {
        if let Some((_, _, first)) = info.fields.iter().find(|(n, _, _)| *n == decl.name.node) {
            diags.push(diag::duplicate(
                "contact field",
                &decl.name.node,
                decl.name.span,
                *first,
            ));
            continue;
        }
        let Some(ty) = field_type(decl, diags) else {
            continue;
        };
        let default = decl
            .default
            .as_ref()
            .and_then(|d| types::literal_for_field(&ty, d, region, diags));
        let full = if decl.optional {
            Type::Optional(Box::new(ty.clone()))
        } else {
            ty.clone()
        };
        info.fields
            .push((decl.name.node.clone(), full, decl.name.span));
        if !decl.optional && decl.default.is_none() {
            info.required.push(decl.name.node.clone());
        }
        fields.push(ir::Field {
            name: decl.name.node.clone(),
            ty,
            optional: decl.optional,
            default,
        });
    }
    let phone_field = fields
        .iter()
        .find(|f| f.ty == Type::Phone)
        .map(|f| f.name.clone());
    (
        info,
        ir::Schema {
            fields,
            phone_field,
        },
    )
}

/// Outcomes a strategy rule may name.
const RULE_OUTCOMES: &[&str] = &[
    "voicemail",
    "busy",
    "no_answer",
    "rejected",
    "invalid_number",
    "network_error",
    "unknown",
];

fn check_strategy(s: &ast::Strategy, diags: &mut Vec<Diagnostic>) -> ir::Strategy {
    let mut out = ir::Strategy {
        name: s.name.node.clone(),
        max_attempts: s.max_attempts.as_ref().map(|m| m.node),
        min_gap_seconds: s.min_gap.as_ref().map_or(0, |g| g.node),
        jitter_percent: s.jitter.as_ref().map_or(0.0, |j| j.node),
        rules: BTreeMap::new(),
    };
    if let Some(m) = &s.max_attempts {
        if m.node == 0 {
            diags.push(diag::invalid_value(
                m.span,
                "`max attempts` must be at least 1",
                "the first dial counts: `max attempts 1` means no retry",
            ));
        }
    }
    if let Some(j) = &s.jitter {
        if j.node > 100.0 {
            diags.push(diag::invalid_value(
                j.span,
                "jitter is at most 100%",
                "spread retries by a share of their delay, for example `jitter 10%`",
            ));
        }
    }
    let mut first_span: HashMap<Outcome, Span> = HashMap::new();
    for rule in &s.rules {
        let action = match &rule.action {
            ast::RuleAction::Stop => ir::StrategyRule::Stop,
            ast::RuleAction::Retry { form, max } => {
                let Some(form_ir) = retry_form(form, diags) else {
                    continue;
                };
                if let (Some(max), Some(attempts)) = (max, &s.max_attempts) {
                    if max.node >= attempts.node && attempts.node > 0 {
                        diags.push(diag::rule_max_unreachable(
                            max.span,
                            max.node,
                            attempts.node,
                            attempts.span,
                        ));
                    }
                }
                if s.max_attempts.is_none() && max.is_none() {
                    diags.push(diag::unbounded_retry(rule.span, Some(&s.name.node)));
                }
                ir::StrategyRule::Retry {
                    form: form_ir,
                    max: max.as_ref().map(|m| m.node),
                }
            }
        };
        for o in &rule.outcomes {
            let Some(outcome) =
                Outcome::from_name(&o.node).filter(|x| RULE_OUTCOMES.contains(&x.name()))
            else {
                diags.push(diag::unknown_outcome(
                    &o.node,
                    o.span,
                    RULE_OUTCOMES,
                    "a dial that a strategy can retry",
                ));
                continue;
            };
            if let Some(first) = first_span.get(&outcome) {
                diags.push(diag::route_twice(&o.node, o.span, *first));
                continue;
            }
            first_span.insert(outcome, o.span);
            out.rules.insert(outcome, action.clone());
        }
    }
    out
}

pub fn retry_form(
    form: &Spanned<ast::RetryForm>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::RetryForm> {
    Some(match &form.node {
        ast::RetryForm::After(delays) => {
            if let Some(zero) = delays.iter().find(|d| d.node == 0) {
                diags.push(diag::invalid_value(
                    zero.span,
                    "a retry delay must be longer than zero",
                    "write a delay such as `15m`",
                ));
                return None;
            }
            ir::RetryForm::After {
                delays_seconds: delays.iter().map(|d| d.node).collect(),
            }
        }
        ast::RetryForm::Backoff { first, factor, cap } => {
            if first.node == 0 {
                diags.push(diag::invalid_value(
                    first.span,
                    "a backoff must start above zero",
                    "write a first delay such as `15m`",
                ));
                return None;
            }
            if factor.node < 1.0 {
                diags.push(diag::invalid_value(
                    factor.span,
                    "a backoff factor below 1 shortens every delay",
                    "use a factor of 1 or more, such as `x2`",
                ));
                return None;
            }
            if let Some(c) = cap.as_ref().filter(|c| c.node < first.node) {
                diags.push(diag::invalid_value(
                    c.span,
                    "the cap is shorter than the first delay",
                    "cap the delays above the first one, for example `up to 4h`",
                ));
                return None;
            }
            ir::RetryForm::Backoff {
                first_seconds: first.node,
                factor: factor.node,
                cap_seconds: cap.as_ref().map(|c| c.node),
            }
        }
        ast::RetryForm::At(times) => ir::RetryForm::At {
            times: times.iter().map(|t| t.node).collect(),
        },
        ast::RetryForm::NextDayAt(times) => ir::RetryForm::NextDayAt {
            times: times.iter().map(|t| t.node).collect(),
        },
        ast::RetryForm::On(instants) => {
            for i in instants {
                types::check_datetime(&i.node, diags);
            }
            ir::RetryForm::On {
                instants: instants
                    .iter()
                    .map(|i| types::local_datetime(&i.node))
                    .collect(),
            }
        }
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

    fn retry(
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
    fn dial_routes(
        &mut self,
        dial_span: Span,
        detect: bool,
        routes: &[ast::Route],
        ctx: &Ctx,
    ) -> (Vec<Vec<ir::Action>>, Vec<BTreeMap<Outcome, ir::Resolution>>) {
        const ALLOWED: &[&str] = &[
            "answered",
            "voicemail",
            "busy",
            "no_answer",
            "rejected",
            "invalid_number",
            "network_error",
            "unknown",
            "exhausted",
            "other",
        ];
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
                    None => self.report(diag::unknown_outcome(&o.node, o.span, ALLOWED, "a dial")),
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
    fn transfer_routes(
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

    fn gather(
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
