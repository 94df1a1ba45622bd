//! Typing expressions and literals: every expression gets a static type,
//! optional values must be unwrapped, enum values and zones and phone numbers
//! are checked where they are written.

use std::collections::HashMap;
use std::str::FromStr;

use super::diagnostics as diag;
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::{self, Type};
use crate::source::Span;
use crate::syntax::ast::{self, BinaryOp, ExprKind, Literal, UnaryOp};

/// The contact schema as the checker sees it.
#[derive(Default)]
pub struct SchemaInfo {
    pub fields: Vec<(String, Type, Span)>,
    pub span: Option<Span>,
    /// Fields neither optional nor defaulted.
    pub required: Vec<String>,
}

impl SchemaInfo {
    pub fn field(&self, name: &str) -> Option<&Type> {
        self.fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, t, _)| t)
    }

    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|(n, _, _)| n.as_str()).collect()
    }
}

/// Variables made by `set`, `record … as` and `gather` (`digits`). A type
/// is known once the value of some `set` has been typed.
#[derive(Default)]
pub struct Vars {
    pub names: Vec<String>,
    pub types: Vec<Option<Type>>,
    pub index: HashMap<String, ir::VarId>,
}

impl Vars {
    pub fn declare(&mut self, name: &str) -> ir::VarId {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        self.names.push(name.to_string());
        self.types.push(None);
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// Records a variable's type; a later `set` of another type is reported.
    pub fn assign(&mut self, id: ir::VarId, ty: Type, span: Span, diags: &mut Vec<Diagnostic>) {
        match &self.types[id] {
            None => self.types[id] = Some(ty),
            Some(known) if compatible(known, &ty) => {}
            Some(known) => diags.push(diag::type_mismatch(span, &describe(known), &describe(&ty))),
        }
    }

    pub fn to_ir(&self) -> Vec<ir::Variable> {
        self.names
            .iter()
            .zip(&self.types)
            .map(|(name, ty)| ir::Variable {
                name: name.clone(),
                ty: ty.clone().unwrap_or(Type::Text),
            })
            .collect()
    }
}

pub struct Env<'a> {
    pub schema: &'a SchemaInfo,
    pub vars: &'a Vars,
    pub arms: &'a [String],
    pub region: Option<phonenumber::country::Id>,
    /// Optional fields known to be set here (inside `if contact.x is set`).
    pub narrowed: Vec<String>,
}

const LOCALS: &[&str] = &["hour", "weekday", "date"];
const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// How a type reads in a message: "a number", "a date".
pub fn describe(t: &Type) -> String {
    match t {
        Type::Text => "a text".into(),
        Type::Number => "a number".into(),
        Type::Bool => "true or false".into(),
        Type::Date => "a date".into(),
        Type::Datetime => "a date and time".into(),
        Type::Duration => "a duration".into(),
        Type::Time => "a time of day".into(),
        Type::Phone => "a phone number".into(),
        Type::Timezone => "a time zone".into(),
        Type::Enum(_) => "an enum value".into(),
        Type::Optional(inner) => format!(
            "an optional {}",
            describe(inner)
                .trim_start_matches("a ")
                .trim_start_matches("an ")
        ),
        Type::List(_) => "a list".into(),
    }
}

fn outcome_names() -> Vec<String> {
    ir::Outcome::DIAL
        .iter()
        .map(|o| o.name().to_string())
        .collect()
}

impl Env<'_> {
    /// Types an expression; `None` when it is wrong (already reported).
    pub fn expr(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<ir::Expr> {
        let (ty, kind) = match &e.kind {
            ExprKind::Error => return None,
            ExprKind::Literal(l) => {
                let (ty, value) = literal_value(l);
                (ty, ir::ExprKind::Literal(value))
            }
            ExprKind::Str(s) => {
                let text = s.plain()?;
                (Type::Text, ir::ExprKind::Literal(ir::Value::Text(text)))
            }
            ExprKind::Field(name) => match self.schema.field(&name.node) {
                Some(t) => {
                    let t = match t {
                        Type::Optional(inner) if self.narrowed.contains(&name.node) => {
                            (**inner).clone()
                        }
                        t => t.clone(),
                    };
                    (t, ir::ExprKind::Field(name.node.clone()))
                }
                None => {
                    diags.push(diag::unknown_field(
                        &name.node,
                        name.span,
                        &self.schema.names(),
                    ));
                    return None;
                }
            },
            ExprKind::Local(name) => {
                let (ty, b) = match name.node.as_str() {
                    "hour" => (Type::Number, ir::Builtin::LocalHour),
                    "weekday" => (
                        Type::Enum(WEEKDAYS.iter().map(|s| s.to_string()).collect()),
                        ir::Builtin::LocalWeekday,
                    ),
                    "date" => (Type::Date, ir::Builtin::LocalDate),
                    other => {
                        let d = diag::unknown_name(
                            Code::UnknownVariable,
                            "local value",
                            other,
                            name.span,
                            LOCALS,
                        );
                        diags.push(d);
                        return None;
                    }
                };
                (ty, ir::ExprKind::Builtin(b))
            }
            ExprKind::Name(name) => match name.node.as_str() {
                "attempt" => (Type::Number, ir::ExprKind::Builtin(ir::Builtin::Attempt)),
                "outcome" => (
                    Type::Enum(outcome_names()),
                    ir::ExprKind::Builtin(ir::Builtin::Outcome),
                ),
                "arm" => (
                    Type::Enum(self.arms.to_vec()),
                    ir::ExprKind::Builtin(ir::Builtin::Arm),
                ),
                n => match self.vars.index.get(n) {
                    // A variable whose every `set` failed to type: already reported.
                    Some(&id) => (self.vars.types[id].clone()?, ir::ExprKind::Var(id)),
                    None => {
                        let mut names: Vec<&str> =
                            self.vars.names.iter().map(String::as_str).collect();
                        names.extend(["attempt", "outcome", "arm"]);
                        names.extend(self.schema.names());
                        let d = diag::unknown_variable(n, name.span, &names);
                        diags.push(d);
                        return None;
                    }
                },
            },
            ExprKind::List(items) => {
                let typed: Vec<Option<ir::Expr>> =
                    items.iter().map(|i| self.expr(i, diags)).collect();
                let typed: Vec<ir::Expr> = typed.into_iter().collect::<Option<_>>()?;
                let elem = typed.first().map_or(Type::Text, |t| t.ty.clone());
                (Type::List(Box::new(elem)), ir::ExprKind::List(typed))
            }
            ExprKind::Unary(op, inner) => {
                let t = self.value(inner, diags)?;
                match op {
                    UnaryOp::Not => {
                        self.expect(&t, &Type::Bool, inner.span, diags)?;
                        (Type::Bool, ir::ExprKind::Not(Box::new(t)))
                    }
                    UnaryOp::Neg => {
                        if !matches!(t.ty, Type::Number | Type::Duration) {
                            diags.push(diag::type_mismatch(
                                inner.span,
                                "a number",
                                &describe(&t.ty),
                            ));
                            return None;
                        }
                        (t.ty.clone(), ir::ExprKind::Neg(Box::new(t)))
                    }
                }
            }
            ExprKind::IsSet(inner) => {
                let t = self.expr(inner, diags)?;
                (Type::Bool, ir::ExprKind::IsSet(Box::new(t)))
            }
            ExprKind::Binary(op, l, r) => return self.binary(e, *op, l, r, diags),
        };
        Some(ir::Expr { ty, kind })
    }

    /// Types an expression whose value is used: an optional must be unwrapped.
    pub fn value(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<ir::Expr> {
        let t = self.expr(e, diags)?;
        if let Type::Optional(_) = t.ty {
            let name = match &e.kind {
                ExprKind::Field(f) => format!("contact.{}", f.node),
                _ => "this value".to_string(),
            };
            diags.push(diag::optional_not_unwrapped(e.span, &name));
            return None;
        }
        Some(t)
    }

    pub fn condition(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<ir::Expr> {
        let t = self.value(e, diags)?;
        if t.ty != Type::Bool {
            diags.push(diag::condition_not_bool(e.span, &describe(&t.ty)));
            return None;
        }
        Some(t)
    }

    fn expect(
        &self,
        t: &ir::Expr,
        want: &Type,
        span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<()> {
        if t.ty != *want {
            diags.push(diag::type_mismatch(span, &describe(want), &describe(&t.ty)));
            return None;
        }
        Some(())
    }

    fn binary(
        &mut self,
        whole: &ast::Expr,
        op: BinaryOp,
        l: &ast::Expr,
        r: &ast::Expr,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<ir::Expr> {
        let ir_op = match op {
            BinaryOp::Or => ir::BinaryOp::Or,
            BinaryOp::And => ir::BinaryOp::And,
            BinaryOp::Eq => ir::BinaryOp::Eq,
            BinaryOp::Ne => ir::BinaryOp::Ne,
            BinaryOp::Lt => ir::BinaryOp::Lt,
            BinaryOp::Le => ir::BinaryOp::Le,
            BinaryOp::Gt => ir::BinaryOp::Gt,
            BinaryOp::Ge => ir::BinaryOp::Ge,
            BinaryOp::In => ir::BinaryOp::In,
            BinaryOp::Coalesce => ir::BinaryOp::Coalesce,
            BinaryOp::Add => ir::BinaryOp::Add,
            BinaryOp::Sub => ir::BinaryOp::Sub,
        };
        let op_span = Span {
            file: whole.span.file,
            start: l.span.end,
            end: r.span.start,
        };
        let build = |ty: Type, a: ir::Expr, b: ir::Expr| {
            Some(ir::Expr {
                ty,
                kind: ir::ExprKind::Binary(ir_op, Box::new(a), Box::new(b)),
            })
        };
        match op {
            BinaryOp::Coalesce => {
                let a = self.expr(l, diags)?;
                let b = self.value(r, diags)?;
                let inner = match &a.ty {
                    Type::Optional(inner) => (**inner).clone(),
                    t => t.clone(),
                };
                if !compatible(&inner, &b.ty) {
                    diags.push(diag::operand_mismatch(
                        "??",
                        op_span,
                        &describe(&inner),
                        l.span,
                        &describe(&b.ty),
                        r.span,
                    ));
                    return None;
                }
                self.check_enum_literal(&inner, r, diags);
                build(inner, a, b)
            }
            BinaryOp::And | BinaryOp::Or => {
                let a = self.condition(l, diags);
                let narrowed_before = self.narrowed.len();
                if op == BinaryOp::And {
                    self.narrowed.extend(set_fields(l));
                }
                let b = self.condition(r, diags);
                self.narrowed.truncate(narrowed_before);
                build(Type::Bool, a?, b?)
            }
            BinaryOp::In => {
                let a = self.value(l, diags)?;
                let ExprKind::List(items) = &r.kind else {
                    let b = self.value(r, diags)?;
                    if b.ty != Type::List(Box::new(a.ty.clone())) {
                        diags.push(diag::type_mismatch(
                            r.span,
                            &format!("a list of {}", describe(&a.ty)),
                            &describe(&b.ty),
                        ));
                        return None;
                    }
                    return build(Type::Bool, a, b);
                };
                let mut typed = Vec::new();
                for item in items {
                    let b = self.value(item, diags)?;
                    if !compatible(&a.ty, &b.ty) {
                        diags.push(diag::operand_mismatch(
                            "in",
                            op_span,
                            &describe(&a.ty),
                            l.span,
                            &describe(&b.ty),
                            item.span,
                        ));
                        return None;
                    }
                    self.check_enum_literal(&a.ty, item, diags);
                    typed.push(b);
                }
                let list = ir::Expr {
                    ty: Type::List(Box::new(a.ty.clone())),
                    kind: ir::ExprKind::List(typed),
                };
                build(Type::Bool, a, list)
            }
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => {
                let (a, b) = (self.value(l, diags), self.value(r, diags));
                let (a, b) = (a?, b?);
                if !compatible(&a.ty, &b.ty) {
                    diags.push(diag::operand_mismatch(
                        op.symbol(),
                        op_span,
                        &describe(&a.ty),
                        l.span,
                        &describe(&b.ty),
                        r.span,
                    ));
                    return None;
                }
                let ordered = matches!(
                    op,
                    BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
                );
                if ordered
                    && !matches!(
                        a.ty,
                        Type::Number | Type::Duration | Type::Date | Type::Datetime | Type::Time
                    )
                {
                    diags.push(diag::operand_mismatch(
                        op.symbol(),
                        op_span,
                        &describe(&a.ty),
                        l.span,
                        &describe(&b.ty),
                        r.span,
                    ));
                    return None;
                }
                self.check_enum_literal(&a.ty, r, diags);
                self.check_enum_literal(&b.ty, l, diags);
                build(Type::Bool, a, b)
            }
            BinaryOp::Add | BinaryOp::Sub => {
                let (a, b) = (self.value(l, diags), self.value(r, diags));
                let (a, b) = (a?, b?);
                let ty = match (&a.ty, &b.ty, op) {
                    (Type::Number, Type::Number, _) => Type::Number,
                    (Type::Duration, Type::Duration, _) => Type::Duration,
                    (Type::Datetime, Type::Duration, _) => Type::Datetime,
                    (Type::Date, Type::Duration, _) => Type::Date,
                    (Type::Duration, Type::Datetime, BinaryOp::Add) => Type::Datetime,
                    (Type::Datetime, Type::Datetime, BinaryOp::Sub)
                    | (Type::Date, Type::Date, BinaryOp::Sub) => Type::Duration,
                    _ => {
                        diags.push(diag::operand_mismatch(
                            op.symbol(),
                            op_span,
                            &describe(&a.ty),
                            l.span,
                            &describe(&b.ty),
                            r.span,
                        ));
                        return None;
                    }
                };
                build(ty, a, b)
            }
        }
    }

    /// `contact.segment == "vipp"`: a text literal compared with an enum must be one of its values.
    fn check_enum_literal(&self, ty: &Type, e: &ast::Expr, diags: &mut Vec<Diagnostic>) {
        if let (Type::Enum(values), ExprKind::Str(s)) = (ty, &e.kind) {
            if let Some(text) = s.plain() {
                if !values.contains(&text) {
                    diags.push(diag::not_in_enum(&text, e.span, values));
                }
            }
        }
    }

    /// A string with `{expr}` parts, for messages.
    pub fn template(&mut self, s: &ast::Str, diags: &mut Vec<Diagnostic>) -> Option<ir::Template> {
        let mut parts = Vec::new();
        let mut ok = true;
        for p in &s.parts {
            match p {
                ast::StrPart::Text(t) => parts.push(ir::TemplatePart::Text(t.clone())),
                ast::StrPart::Expr(e) => match self.value(e, diags) {
                    Some(t) => parts.push(ir::TemplatePart::Expr(t)),
                    None => ok = false,
                },
            }
        }
        ok.then_some(ir::Template { parts })
    }

    /// A number to dial or transfer to: a phone-typed value or a valid literal.
    pub fn phone(&mut self, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<ir::Expr> {
        if let ExprKind::Str(s) = &e.kind {
            let text = s.plain()?;
            check_phone(&text, e.span, self.region, diags)?;
            return Some(ir::Expr {
                ty: Type::Phone,
                kind: ir::ExprKind::Literal(ir::Value::Text(text)),
            });
        }
        let t = self.value(e, diags)?;
        if !matches!(t.ty, Type::Phone | Type::Text) {
            diags.push(diag::type_mismatch(
                e.span,
                "a phone number",
                &describe(&t.ty),
            ));
            return None;
        }
        Some(t)
    }
}

/// Fields tested with `is set` in a chain of `and`s.
fn set_fields(e: &ast::Expr) -> Vec<String> {
    match &e.kind {
        ExprKind::IsSet(inner) => match &inner.kind {
            ExprKind::Field(f) => vec![f.node.clone()],
            _ => vec![],
        },
        ExprKind::Binary(BinaryOp::And, l, r) => {
            let mut v = set_fields(l);
            v.extend(set_fields(r));
            v
        }
        _ => vec![],
    }
}

/// Fields that are known to be set when `cond` is true.
pub fn narrowed_by(cond: &ast::Expr) -> Vec<String> {
    set_fields(cond)
}

fn compatible(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Enum(_), Type::Text) | (Type::Text, Type::Enum(_)) => true,
        (Type::Phone, Type::Text) | (Type::Text, Type::Phone) => true,
        (Type::Timezone, Type::Text) | (Type::Text, Type::Timezone) => true,
        (Type::Enum(x), Type::Enum(y)) => x == y,
        _ => a == b,
    }
}

pub fn literal_value(l: &Literal) -> (Type, ir::Value) {
    match l {
        Literal::Number(n) => (Type::Number, ir::Value::Number(*n)),
        Literal::Percent(n) => (Type::Number, ir::Value::Number(*n / 100.0)),
        Literal::Bool(b) => (Type::Bool, ir::Value::Bool(*b)),
        Literal::Duration(d) => (Type::Duration, ir::Value::Duration(*d)),
        Literal::Time(t) => (Type::Time, ir::Value::Time(*t)),
        Literal::Date(d) => (Type::Date, ir::Value::Date(*d)),
        Literal::DateTime(dt) => (Type::Datetime, ir::Value::Datetime(local_datetime(dt))),
    }
}

pub fn local_datetime(dt: &ast::DateTime) -> ir::LocalDateTime {
    ir::LocalDateTime {
        local: dt.local,
        zone: dt.zone.as_ref().map(|z| z.node.clone()),
    }
}

pub fn check_zone(zone: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Option<()> {
    if chrono_tz::Tz::from_str(zone).is_ok() {
        return Some(());
    }
    diags.push(diag::unknown_zone(zone, span));
    None
}

/// A date-time's own zone, if it names one, must exist.
pub fn check_datetime(dt: &ast::DateTime, diags: &mut Vec<Diagnostic>) {
    if let Some(z) = &dt.zone {
        let _ = check_zone(&z.node, z.span, diags);
    }
}

/// Normalises a phone literal to E.164, reporting it when it cannot be dialled.
pub fn check_phone(
    text: &str,
    span: Span,
    region: Option<phonenumber::country::Id>,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let region = if text.trim_start().starts_with('+') {
        None
    } else {
        region
    };
    let reason = match phonenumber::parse(region, text) {
        Ok(n) if phonenumber::is_valid(&n) => {
            return Some(n.format().mode(phonenumber::Mode::E164).to_string())
        }
        Ok(_) => "no such number in its country's numbering plan",
        Err(_) if region.is_none() && !text.trim_start().starts_with('+') => {
            "without `+` and a country code, the country is unknown"
        }
        Err(_) => "this cannot be read as a phone number",
    };
    diags.push(diag::invalid_phone(text, span, reason));
    None
}

/// Checks a literal (a default value, a test contact's field) against a field type.
pub fn literal_for_field(
    ty: &Type,
    e: &ast::Expr,
    region: Option<phonenumber::country::Id>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Value> {
    let base = match ty {
        Type::Optional(inner) => inner,
        t => t,
    };
    let found = match &e.kind {
        ExprKind::Str(s) => {
            let text = s.plain()?;
            match base {
                Type::Text => return Some(ir::Value::Text(text)),
                Type::Phone => {
                    return check_phone(&text, e.span, region, diags).map(ir::Value::Text)
                }
                Type::Timezone => {
                    return check_zone(&text, e.span, diags).map(|_| ir::Value::Text(text))
                }
                Type::Enum(values) => {
                    if values.contains(&text) {
                        return Some(ir::Value::Text(text));
                    }
                    diags.push(diag::not_in_enum(&text, e.span, values));
                    return None;
                }
                _ => Type::Text,
            }
        }
        ExprKind::Literal(l) => {
            let (t, v) = literal_value(l);
            if let ast::Literal::DateTime(dt) = l {
                check_datetime(dt, diags);
            }
            if t == *base {
                return Some(v);
            }
            t
        }
        _ => {
            diags.push(
                Diagnostic::new(Code::TypeMismatch, "expected a literal value")
                    .primary(e.span, "not a literal")
                    .help("write the value itself, such as `\"Ann\"`, `42` or `2026-12-31`"),
            );
            return None;
        }
    };
    diags.push(diag::type_mismatch(
        e.span,
        &describe(base),
        &describe(&found),
    ));
    None
}
