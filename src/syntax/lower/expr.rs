//! Lowering expressions with a Pratt parser, within bounded depth.

use std::sync::LazyLock;

use pest::iterators::{Pair, Pairs};

use super::{kids, too_deep, Lower, MAX_OPERATORS, MAX_PREFIX};
use crate::source::Span;
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;
use pest::pratt_parser::{Assoc, Op, PrattParser};

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::prefix(Rule::not_op))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::in_op, Assoc::Left))
        .op(Op::infix(Rule::coalesce, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::prefix(Rule::neg))
        .op(Op::postfix(Rule::is_set))
});

impl Lower {
    pub(super) fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let pairs: Pairs<'_, Rule> = pair.into_inner();
        // The Pratt parser recurses once per prefix operator, and the tree it
        // builds is as deep as its operator chain: both are bounded here.
        let (mut run, mut longest_run, mut operators) = (0usize, 0usize, 0usize);
        for p in pairs.clone() {
            match p.as_rule() {
                Rule::not_op | Rule::neg => {
                    run += 1;
                    longest_run = longest_run.max(run);
                }
                Rule::or_op
                | Rule::and_op
                | Rule::eq
                | Rule::ne
                | Rule::lt
                | Rule::le
                | Rule::gt
                | Rule::ge
                | Rule::in_op
                | Rule::coalesce
                | Rule::add
                | Rule::sub => {
                    operators += 1;
                    run = 0;
                }
                _ => run = 0,
            }
        }
        if longest_run > MAX_PREFIX || operators > MAX_OPERATORS {
            self.error(too_deep(
                span,
                "this expression is too long",
                "split it with `set` into smaller steps",
            ));
            return Expr {
                span,
                kind: ExprKind::Error,
            };
        }
        let file = self.file;
        let offset = self.offset;
        let span_of = move |p: &Pair<'_, Rule>| {
            Span::new(
                file,
                offset + p.as_span().start(),
                offset + p.as_span().end(),
            )
        };
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(move |op, rhs| {
                let op_kind = if op.as_rule() == Rule::not_op {
                    UnaryOp::Not
                } else {
                    UnaryOp::Neg
                };
                Expr {
                    span: span_of(&op).to(rhs.span),
                    kind: ExprKind::Unary(op_kind, Box::new(rhs)),
                }
            })
            .map_postfix(move |lhs, op| Expr {
                span: lhs.span.to(span_of(&op)),
                kind: ExprKind::IsSet(Box::new(lhs)),
            })
            .map_infix(move |lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::or_op => BinaryOp::Or,
                    Rule::and_op => BinaryOp::And,
                    Rule::eq => BinaryOp::Eq,
                    Rule::ne => BinaryOp::Ne,
                    Rule::lt => BinaryOp::Lt,
                    Rule::le => BinaryOp::Le,
                    Rule::gt => BinaryOp::Gt,
                    Rule::ge => BinaryOp::Ge,
                    Rule::in_op => BinaryOp::In,
                    Rule::coalesce => BinaryOp::Coalesce,
                    Rule::add => BinaryOp::Add,
                    _ => BinaryOp::Sub,
                };
                Expr {
                    span: lhs.span.to(rhs.span),
                    kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                }
            })
            .parse(pairs)
    }

    pub(super) fn primary(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::expr => return self.expr(pair),
            Rule::list => ExprKind::List(pair.into_inner().map(|e| self.expr(e)).collect()),
            Rule::literal => return self.literal(pair),
            Rule::field_ref => ExprKind::Field(self.ident(kids(pair).next().expect("field name"))),
            Rule::local_ref => {
                ExprKind::Local(self.ident(pair.into_inner().next().expect("local name")))
            }
            _ => ExprKind::Name(self.ident(pair)),
        };
        Expr { span, kind }
    }

    pub(super) fn literal(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("literal has a child");
        let kind = match inner.as_rule() {
            Rule::datetime => ExprKind::Literal(Literal::DateTime(self.datetime(inner).node)),
            Rule::date => ExprKind::Literal(Literal::Date(self.date(inner).node)),
            Rule::time => ExprKind::Literal(Literal::Time(self.time(inner, false).node)),
            Rule::duration => ExprKind::Literal(Literal::Duration(self.duration(inner).node)),
            Rule::percent => ExprKind::Literal(Literal::Percent(self.number(&inner))),
            Rule::number => ExprKind::Literal(Literal::Number(self.number(&inner))),
            Rule::string => ExprKind::Str(self.string(inner)),
            _ => ExprKind::Literal(Literal::Bool(inner.as_str() == "true")),
        };
        Expr { span, kind }
    }
}
