//! Flow analysis over the step graph: reachability, whether a call is
//! connected where in-call actions run, variables read before they are set,
//! blocks that run out of actions, and loops that never end or dial without
//! bound.

use std::collections::{BTreeSet, HashMap};

use super::diagnostics as diag;
use super::flow::mentions_attempt;
use crate::diagnostic::Diagnostic;
use crate::ir::{self, Outcome, StepId, VarId};
use crate::source::Span;
use crate::syntax::ast::{self, ActionKind, ExprKind, StrPart, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conn {
    Yes,
    No,
    Maybe,
}

impl Conn {
    /// Connected when all the outcomes routed here leave a call connected,
    /// not when none does, perhaps otherwise.
    fn of(connected: usize, routed: usize) -> Conn {
        match connected {
            0 => Conn::No,
            n if n == routed => Conn::Yes,
            _ => Conn::Maybe,
        }
    }

    fn join(self, other: Conn) -> Conn {
        if self == other {
            self
        } else {
            Conn::Maybe
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct State {
    conn: Conn,
    /// The route that made the call unconnected, for the secondary label.
    via: Option<Span>,
    assigned: BTreeSet<VarId>,
    guarded: bool,
}

impl State {
    fn join(&self, other: &State) -> State {
        State {
            conn: self.conn.join(other.conn),
            via: self.via.or(other.via),
            assigned: self
                .assigned
                .intersection(&other.assigned)
                .copied()
                .collect(),
            guarded: self.guarded && other.guarded,
        }
    }
}

struct Edge {
    from: StepId,
    to: StepId,
    span: Span,
    state: State,
}

struct Walker<'a> {
    steps: &'a HashMap<String, StepId>,
    vars: &'a HashMap<String, VarId>,
    current: StepId,
    edges: Vec<Edge>,
    /// A `goto` or route named a step that does not exist (reported by the checker).
    unresolved: bool,
    report: bool,
    diags: Vec<Diagnostic>,
}

/// What the analysis needs to know about a checked flow.
pub struct Facts<'a> {
    pub flow: &'a ast::Flow,
    pub steps: &'a HashMap<String, StepId>,
    pub entry: StepId,
    pub arms: &'a [ir::Arm],
    pub strategies: &'a [ir::Strategy],
    /// Variable names to their ids; every variable is declared before analysis.
    pub vars: &'a HashMap<String, VarId>,
}

pub fn analyse(facts: &Facts<'_>, diags: &mut Vec<Diagnostic>) {
    let Facts {
        flow,
        steps,
        entry,
        arms,
        strategies,
        vars,
    } = *facts;
    if flow.steps.is_empty() {
        return;
    }
    let n = flow.steps.len();
    let mut entry_state: Vec<Option<State>> = vec![None; n];
    entry_state[entry] = Some(State {
        conn: Conn::No,
        via: None,
        assigned: BTreeSet::new(),
        guarded: false,
    });
    let mut work = vec![entry];
    let mut rounds = 0;
    while let Some(step) = work.pop() {
        rounds += 1;
        if rounds > 64 * n + 64 {
            break; // The lattice is finite; this is a guard, not a limit ever reached.
        }
        let mut w = Walker {
            steps,
            vars,
            current: step,
            edges: Vec::new(),
            unresolved: false,
            report: false,
            diags: Vec::new(),
        };
        let state = entry_state[step]
            .clone()
            .expect("only reached steps are queued");
        w.step(&flow.steps[step], state);
        for e in w.edges {
            let merged = match &entry_state[e.to] {
                None => e.state,
                Some(old) => old.join(&e.state),
            };
            if entry_state[e.to].as_ref() != Some(&merged) {
                entry_state[e.to] = Some(merged);
                work.push(e.to);
            }
        }
    }

    // The reporting pass, each step once, with its final entry state.
    let mut edges = Vec::new();
    let mut unreached = Vec::new();
    let mut unresolved = false;
    for (i, step) in flow.steps.iter().enumerate() {
        let state = match &entry_state[i] {
            Some(s) => s.clone(),
            None => {
                if i != entry {
                    unreached.push(diag::unreachable_step(&step.name.node, step.name.span));
                }
                // Unreached: assume the best so that only structural mistakes show.
                State {
                    conn: Conn::Yes,
                    via: None,
                    assigned: vars.values().copied().collect(),
                    guarded: true,
                }
            }
        };
        let mut w = Walker {
            steps,
            vars,
            current: i,
            edges: Vec::new(),
            unresolved: false,
            report: true,
            diags: Vec::new(),
        };
        w.step(step, state);
        unresolved |= w.unresolved;
        diags.append(&mut w.diags);
        if entry_state[i].is_some() {
            edges.append(&mut w.edges);
        }
    }

    // A misspelt step name leaves reachability unknown: no unreachable warnings then.
    if !unresolved {
        diags.append(&mut unreached);
    }

    let progress: Vec<bool> = flow
        .steps
        .iter()
        .map(|s| block_progresses(&s.body))
        .collect();
    let dials: Vec<bool> = flow.steps.iter().map(|s| block_dials(&s.body)).collect();
    let name = |i: StepId| flow.steps[i].name.node.clone();

    // A loop is reported at an edge inside it, naming every step it runs through.
    let in_loop = |edges: &[&Edge], scc: &[StepId]| {
        let span = edges
            .iter()
            .find(|e| scc.contains(&e.from) && scc.contains(&e.to))?
            .span;
        Some((span, scc.iter().map(|s| name(*s)).collect::<Vec<_>>()))
    };
    let all: Vec<&Edge> = edges.iter().collect();
    for scc in cycles(n, all.iter().map(|e| (e.from, e.to))) {
        if scc.iter().all(|s| !progress[*s]) {
            if let Some((span, steps)) = in_loop(&all, &scc) {
                diags.push(diag::endless_loop(span, &steps));
            }
        }
    }
    let unbounded_arm = arms.iter().any(|a| {
        a.strategy
            .is_none_or(|s| strategies[s].max_attempts.is_none())
    });
    if unbounded_arm {
        let unguarded: Vec<&Edge> = edges.iter().filter(|e| !e.state.guarded).collect();
        for scc in cycles(n, unguarded.iter().map(|e| (e.from, e.to))) {
            if scc.iter().any(|s| dials[*s]) {
                if let Some((span, steps)) = in_loop(&unguarded, &scc) {
                    diags.push(diag::unbounded_dial_cycle(span, &steps));
                }
            }
        }
    }
}

impl Walker<'_> {
    fn emit(&mut self, d: Diagnostic) {
        if self.report {
            self.diags.push(d);
        }
    }

    fn step(&mut self, step: &ast::Step, state: State) {
        if self.walk(&step.body, state).is_some() {
            let end = step.body.span.end;
            let brace = Span {
                file: step.body.span.file,
                start: end.saturating_sub(1),
                end,
            };
            self.emit(diag::step_without_end(brace));
        }
    }

    fn goto(&mut self, name: &ast::Ident, state: &State) {
        match self.steps.get(&name.node) {
            Some(&to) => self.edges.push(Edge {
                from: self.current,
                to,
                span: name.span,
                state: state.clone(),
            }),
            None => self.unresolved = true,
        }
    }

    /// Walks a block; `None` when every path through it has ended or moved on.
    fn walk(&mut self, b: &ast::Block, mut state: State) -> Option<State> {
        for a in &b.actions {
            match &a.kind {
                ActionKind::Dial {
                    number,
                    detect_voicemail,
                    ..
                } => {
                    self.reads(number, &state);
                    self.dial_routes(&b.routes, detect_voicemail.is_some(), &state);
                    return None;
                }
                ActionKind::Transfer { number, .. } => {
                    self.in_call("transfer", a.span, &state);
                    self.reads(number, &state);
                    for r in &b.routes {
                        let failed = r
                            .outcomes
                            .iter()
                            .filter(|o| o.node == "failed" || o.node == "other")
                            .count();
                        let conn = Conn::of(failed, r.outcomes.len());
                        let s = State {
                            conn,
                            via: (conn != Conn::Yes).then_some(r.span),
                            ..state.clone()
                        };
                        self.target(&r.target, s, r.span);
                    }
                    return None;
                }
                ActionKind::Gather { arms, .. } => {
                    self.in_call("gather", a.span, &state);
                    if let Some(&d) = self.vars.get("digits") {
                        state.assigned.insert(d);
                    }
                    for arm in arms {
                        self.target(&arm.target, state.clone(), arm.span);
                    }
                    return None;
                }
                ActionKind::Say(s) => {
                    self.in_call("say", a.span, &state);
                    self.template(s, &state);
                }
                ActionKind::Play(_) => self.in_call("play", a.span, &state),
                ActionKind::Record { name, .. } => {
                    self.in_call("record", a.span, &state);
                    if let Some(&v) = self.vars.get(&name.node) {
                        state.assigned.insert(v);
                    }
                }
                ActionKind::Set { name, value } => {
                    self.reads(value, &state);
                    if let Some(&v) = self.vars.get(&name.node) {
                        state.assigned.insert(v);
                    }
                }
                ActionKind::SendSms(s) => self.template(s, &state),
                ActionKind::SendEmail { body, subject } => {
                    self.template(body, &state);
                    if let Some(s) = subject {
                        self.template(s, &state);
                    }
                }
                ActionKind::Wait(_) => {
                    if state.conn != Conn::No {
                        self.emit(diag::wait_during_call(a.span));
                    }
                }
                ActionKind::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    self.reads(cond, &state);
                    let mut inner = state.clone();
                    inner.guarded |= mentions_attempt(cond);
                    let t = self.walk(then, inner.clone());
                    let e = match otherwise {
                        Some(o) => self.walk(o, inner),
                        None => Some(state.clone()),
                    };
                    state = match (t, e) {
                        (None, None) => return None,
                        (Some(x), None) | (None, Some(x)) => x,
                        (Some(x), Some(y)) => x.join(&y),
                    };
                    state.guarded = false;
                }
                ActionKind::Goto(name) => {
                    self.goto(name, &state);
                    return None;
                }
                ActionKind::Retry { .. } | ActionKind::End { .. } => return None,
                ActionKind::Flag(_) | ActionKind::OptOut => {}
            }
        }
        Some(state)
    }

    fn target(&mut self, t: &Target, state: State, route_span: Span) {
        match t {
            Target::Step(name) => self.goto(name, &state),
            Target::Block(b) => {
                if self.walk(b, state).is_some() {
                    self.emit(diag::step_without_end(route_span));
                }
            }
        }
    }

    fn dial_routes(&mut self, routes: &[ast::Route], detect: bool, state: &State) {
        let listed: Vec<&str> = routes
            .iter()
            .flat_map(|r| r.outcomes.iter().map(|o| o.node.as_str()))
            .collect();
        for r in routes {
            let mut outcomes: Vec<Outcome> = r
                .outcomes
                .iter()
                .filter_map(|o| Outcome::from_name(&o.node))
                .collect();
            if r.outcomes.iter().any(|o| o.node == "other") {
                outcomes.extend(
                    Outcome::DIAL
                        .into_iter()
                        .filter(|o| *o != Outcome::Unknown && (detect || *o != Outcome::Voicemail))
                        .filter(|o| !listed.contains(&o.name())),
                );
            }
            let connected = outcomes.iter().filter(|o| o.connects()).count();
            let conn = Conn::of(connected, outcomes.len());
            let s = State {
                conn,
                via: (conn != Conn::Yes).then_some(r.span),
                ..state.clone()
            };
            self.target(&r.target, s, r.span);
        }
    }

    fn in_call(&mut self, what: &str, span: Span, state: &State) {
        if state.conn != Conn::Yes {
            self.emit(diag::in_call_without_call(what, span, state.via));
        }
    }

    fn template(&mut self, s: &ast::Str, state: &State) {
        for p in &s.parts {
            if let StrPart::Expr(e) = p {
                self.reads(e, state);
            }
        }
    }

    fn reads(&mut self, e: &ast::Expr, state: &State) {
        match &e.kind {
            ExprKind::Name(n) => {
                if let Some(&v) = self.vars.get(&n.node) {
                    if !state.assigned.contains(&v) {
                        self.emit(diag::read_before_set(&n.node, n.span, state.via));
                    }
                }
            }
            ExprKind::Unary(_, x) | ExprKind::IsSet(x) => self.reads(x, state),
            ExprKind::Binary(_, l, r) => {
                self.reads(l, state);
                self.reads(r, state);
            }
            ExprKind::List(items) => items.iter().for_each(|i| self.reads(i, state)),
            ExprKind::Str(s) => self.template(s, state),
            _ => {}
        }
    }
}

/// Whether a block dials, waits, gathers input or ends somewhere: a loop
/// through it takes time or can leave.
fn block_progresses(b: &ast::Block) -> bool {
    let target = |t: &Target| matches!(t, Target::Block(b) if block_progresses(b));
    b.routes.iter().any(|r| target(&r.target))
        || b.actions.iter().any(|a| match &a.kind {
            ActionKind::Dial { .. }
            | ActionKind::Wait(_)
            | ActionKind::End { .. }
            | ActionKind::Gather { .. } => true,
            ActionKind::If {
                then, otherwise, ..
            } => block_progresses(then) || otherwise.as_ref().is_some_and(block_progresses),
            _ => false,
        })
}

fn block_dials(b: &ast::Block) -> bool {
    b.actions.iter().any(|a| match &a.kind {
        ActionKind::Dial { .. } => true,
        ActionKind::If {
            then, otherwise, ..
        } => block_dials(then) || otherwise.as_ref().is_some_and(block_dials),
        _ => false,
    })
}

/// The strongly connected components that contain a cycle (Tarjan).
fn cycles(n: usize, edges: impl Iterator<Item = (StepId, StepId)>) -> Vec<Vec<StepId>> {
    let mut adj = vec![Vec::new(); n];
    let mut self_loop = vec![false; n];
    for (a, b) in edges {
        adj[a].push(b);
        if a == b {
            self_loop[a] = true;
        }
    }
    struct T {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    let mut t = T {
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    // Iterative to stay safe on very long chains of steps.
    for root in 0..n {
        if t.index[root].is_some() {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        t.index[root] = Some(t.next);
        t.low[root] = t.next;
        t.next += 1;
        t.stack.push(root);
        t.on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if *i < adj[v].len() {
                let w = adj[v][*i];
                *i += 1;
                match t.index[w] {
                    None => {
                        t.index[w] = Some(t.next);
                        t.low[w] = t.next;
                        t.next += 1;
                        t.stack.push(w);
                        t.on_stack[w] = true;
                        call.push((w, 0));
                    }
                    Some(wi) if t.on_stack[w] => t.low[v] = t.low[v].min(wi),
                    Some(_) => {}
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    t.low[parent] = t.low[parent].min(t.low[v]);
                }
                if Some(t.low[v]) == t.index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = t.stack.pop() {
                        t.on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comp.sort();
                    t.out.push(comp);
                }
            }
        }
    }
    t.out
        .into_iter()
        .filter(|c| c.len() > 1 || self_loop[c[0]])
        .collect()
}
