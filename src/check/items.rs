//! Checking the items a flow refers to: the contact schema and strategies,
//! and retry forms wherever they are written.

use std::collections::{BTreeMap, HashMap};

use super::diagnostics as diag;
use super::types::{self, SchemaInfo};
use crate::diagnostic::Diagnostic;
use crate::ir::{self, Outcome, Type};
use crate::source::{Span, Spanned};
use crate::syntax::ast;

pub(super) fn field_type(decl: &ast::FieldDecl, diags: &mut Vec<Diagnostic>) -> Option<Type> {
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

pub(super) fn check_schema(
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
pub(super) const RULE_OUTCOMES: &[&str] = &[
    "voicemail",
    "busy",
    "no_answer",
    "rejected",
    "invalid_number",
    "network_error",
    "unknown",
];

pub(super) fn check_strategy(s: &ast::Strategy, diags: &mut Vec<Diagnostic>) -> ir::Strategy {
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
