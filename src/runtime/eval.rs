//! Evaluating typed IR expressions and message templates for one contact.
//! The checker typed every expression, so a mismatch here is a missing value
//! (an unset optional field), never a type error.

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::ir::{BinaryOp, Builtin, Expr, ExprKind, Template, TemplatePart, Value};

/// What an expression can read.
pub struct Scope<'a> {
    pub field: &'a dyn Fn(&str) -> Option<Value>,
    pub vars: &'a [Option<Value>],
    pub attempt: u32,
    pub outcome: Option<&'a str>,
    pub arm: &'a str,
    /// The contact's local clock, read only by expressions that use it (a
    /// zone lookup is the dearest part of evaluating most expressions).
    pub local: &'a dyn Fn() -> NaiveDateTime,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub fn eval(e: &Expr, s: &Scope<'_>) -> Option<Value> {
    match &e.kind {
        ExprKind::Literal(v) => Some(v.clone()),
        ExprKind::Field(name) => (s.field)(name),
        ExprKind::Var(id) => s.vars.get(*id).cloned().flatten(),
        ExprKind::Builtin(b) => Some(match b {
            Builtin::Attempt => Value::Number(f64::from(s.attempt)),
            Builtin::Outcome => Value::Text(s.outcome.unwrap_or("").to_string()),
            Builtin::Arm => Value::Text(s.arm.to_string()),
            Builtin::Digits => return None,
            Builtin::LocalHour => Value::Number(f64::from((s.local)().hour())),
            Builtin::LocalWeekday => {
                Value::Text(WEEKDAYS[(s.local)().weekday().num_days_from_monday() as usize].into())
            }
            Builtin::LocalDate => Value::Date((s.local)().date()),
        }),
        ExprKind::List(_) => None,
        ExprKind::Not(x) => match eval(x, s)? {
            Value::Bool(b) => Some(Value::Bool(!b)),
            _ => None,
        },
        ExprKind::Neg(x) => match eval(x, s)? {
            Value::Number(n) => Some(Value::Number(-n)),
            _ => None,
        },
        ExprKind::IsSet(x) => Some(Value::Bool(eval(x, s).is_some())),
        ExprKind::Binary(op, l, r) => binary(*op, l, r, s),
    }
}

pub fn truthy(e: &Expr, s: &Scope<'_>) -> bool {
    matches!(eval(e, s), Some(Value::Bool(true)))
}

fn binary(op: BinaryOp, l: &Expr, r: &Expr, s: &Scope<'_>) -> Option<Value> {
    match op {
        BinaryOp::And => Some(Value::Bool(truthy(l, s) && truthy(r, s))),
        BinaryOp::Or => Some(Value::Bool(truthy(l, s) || truthy(r, s))),
        BinaryOp::Coalesce => eval(l, s).or_else(|| eval(r, s)),
        BinaryOp::In => {
            let x = eval(l, s)?;
            let ExprKind::List(items) = &r.kind else {
                return None;
            };
            Some(Value::Bool(
                items
                    .iter()
                    .any(|i| eval(i, s).is_some_and(|v| same(&x, &v))),
            ))
        }
        BinaryOp::Eq => Some(Value::Bool(same(&eval(l, s)?, &eval(r, s)?))),
        BinaryOp::Ne => Some(Value::Bool(!same(&eval(l, s)?, &eval(r, s)?))),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let ord = order(&eval(l, s)?, &eval(r, s)?)?;
            Some(Value::Bool(match op {
                BinaryOp::Lt => ord.is_lt(),
                BinaryOp::Le => ord.is_le(),
                BinaryOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        BinaryOp::Add | BinaryOp::Sub => {
            let (a, b) = (eval(l, s)?, eval(r, s)?);
            let sign: i64 = if op == BinaryOp::Add { 1 } else { -1 };
            match (a, b) {
                (Value::Number(x), Value::Number(y)) => Some(Value::Number(x + sign as f64 * y)),
                (Value::Duration(x), Value::Duration(y)) => Some(Value::Duration(if sign > 0 {
                    x.saturating_add(y)
                } else {
                    x.saturating_sub(y)
                })),
                (Value::Datetime(mut d), Value::Duration(y)) => {
                    d.local += chrono::Duration::seconds(sign * y as i64);
                    Some(Value::Datetime(d))
                }
                (Value::Date(d), Value::Duration(y)) => Some(Value::Date(
                    d + chrono::Duration::days(sign * (y / 86_400) as i64),
                )),
                (Value::Datetime(a), Value::Datetime(b)) if sign < 0 => Some(Value::Duration(
                    (a.local - b.local).num_seconds().max(0) as u64,
                )),
                (Value::Date(a), Value::Date(b)) if sign < 0 => {
                    Some(Value::Duration(((a - b).num_days().max(0) * 86_400) as u64))
                }
                _ => None,
            }
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
        (Value::Datetime(x), Value::Datetime(y)) => Some(x.local.cmp(&y.local)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A value as a message shows it.
pub fn show(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        Value::Number(n) => format!("{n:.2}"),
        Value::Bool(b) => b.to_string(),
        Value::Date(d) => d.to_string(),
        Value::Datetime(d) => d.local.format("%Y-%m-%d %H:%M").to_string(),
        Value::Duration(s) => crate::check::human_duration(*s),
        Value::Time(m) => format!("{:02}:{:02}", m / 60, m % 60),
    }
}

pub fn render(t: &Template, s: &Scope<'_>) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            TemplatePart::Text(x) => x.clone(),
            TemplatePart::Expr(e) => eval(e, s).map(|v| show(&v)).unwrap_or_default(),
        })
        .collect()
}
