//! `flowc graph`: a flow as a picture. Steps are nodes; routes are edges
//! labelled by outcome (and gather key or transfer outcome); retries are
//! loops on their step labelled with their wait; ends are terminal nodes
//! with their state and reason; the strategies and calendars in force form a
//! legend. Built from the IR for one experiment arm, then written as Mermaid
//! or Graphviz DOT.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ir::{self, Action, Outcome, Resolution, RetryForm, StrategyRule};

/// A node of the picture.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Step(ir::StepId),
    End { completed: bool, reason: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: Node,
    pub to: Node,
    pub label: String,
}

/// The picture of one arm of a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub title: String,
    /// Each step with what it does first (`dial`, `gather`, …).
    pub steps: Vec<(String, String)>,
    pub ends: Vec<Node>,
    pub edges: Vec<Edge>,
    pub legend: Vec<String>,
}

/// The picture of `flow` as contacts of `arm` run it.
pub fn graph(flow: &ir::Flow, arm: ir::ArmId) -> Graph {
    let mut b = Builder {
        flow,
        arm,
        edges: Vec::new(),
    };
    for (id, step) in flow.steps.iter().enumerate() {
        b.walk(id, &step.actions, "");
    }
    // Edges between the same two nodes (a step's retry loops, outcomes
    // that lead to the same step) become one, a label a line.
    let mut edges: Vec<Edge> = Vec::new();
    for e in b.edges {
        match edges.iter_mut().find(|x| x.from == e.from && x.to == e.to) {
            Some(x) if !e.label.is_empty() && !x.label.is_empty() => {
                x.label = format!("{}\n{}", x.label, e.label)
            }
            Some(_) => {}
            None => edges.push(e),
        }
    }
    let mut ends: Vec<Node> = edges
        .iter()
        .filter(|e| matches!(e.to, Node::End { .. }))
        .map(|e| e.to.clone())
        .collect();
    ends.sort();
    ends.dedup();
    let steps = flow
        .steps
        .iter()
        .map(|s| (s.name.clone(), summary(&s.actions)))
        .collect();
    let a = &flow.arms[arm];
    let mut title = flow.name.clone();
    if flow.experiment.is_some() {
        title.push_str(&format!(" (arm {})", a.name));
    }
    Graph {
        title,
        steps,
        ends,
        edges,
        legend: legend(flow, a),
    }
}

struct Builder<'f> {
    flow: &'f ir::Flow,
    arm: ir::ArmId,
    edges: Vec<Edge>,
}

impl Builder<'_> {
    fn edge(&mut self, from: ir::StepId, to: Node, label: &str) {
        let edge = Edge {
            from: Node::Step(from),
            to,
            label: label.to_string(),
        };
        if !self.edges.contains(&edge) {
            self.edges.push(edge);
        }
    }

    /// Follows a block of step `at`; `label` is how the block was reached.
    fn walk(&mut self, at: ir::StepId, actions: &[Action], label: &str) {
        for action in actions {
            match action {
                Action::Dial(dial) => self.dial(at, dial),
                Action::Gather(g) => {
                    for (key, block) in &g.keys {
                        let key = if key == "other" {
                            "other keys".to_string()
                        } else {
                            format!("key {key}")
                        };
                        self.walk(at, block, &join(label, &key));
                    }
                    self.walk(at, &g.on_timeout, &join(label, "timeout"));
                    self.walk(at, &g.on_invalid, &join(label, "invalid"));
                }
                Action::Transfer(t) => {
                    self.walk(at, &t.answered, &join(label, "transfer answered"));
                    self.walk(at, &t.failed, &join(label, "transfer failed"));
                    self.walk(at, &t.hangup, &join(label, "transfer hangup"));
                }
                Action::If {
                    then, otherwise, ..
                } => {
                    self.walk(at, then, &join(label, "if"));
                    self.walk(at, otherwise, &join(label, "else"));
                }
                Action::Goto { step } => self.edge(at, Node::Step(*step), label),
                Action::End { completed, reason } => self.edge(
                    at,
                    Node::End {
                        completed: *completed,
                        reason: reason.clone().unwrap_or_default(),
                    },
                    label,
                ),
                Action::Retry { form, .. } => {
                    let wait = match form {
                        Some(f) => Some(wait(f)),
                        None => self.rule_wait(label),
                    };
                    match wait {
                        Some(w) => self.edge(at, Node::Step(at), &format!("{label}: {w}")),
                        None => self.edge(at, exhausted(), label),
                    }
                }
                _ => {}
            }
        }
    }

    /// The wait of the strategy rule for the outcome that begins `label`.
    fn rule_wait(&self, label: &str) -> Option<String> {
        let outcome = Outcome::from_name(label.split(' ').next()?.trim_end_matches(','))?;
        match self.strategy()?.rules.get(&outcome)? {
            StrategyRule::Retry { form, .. } => Some(wait(form)),
            StrategyRule::Stop => None,
        }
    }

    fn strategy(&self) -> Option<&ir::Strategy> {
        self.flow.arms[self.arm]
            .strategy
            .map(|s| &self.flow.strategies[s])
    }

    fn dial(&mut self, at: ir::StepId, dial: &ir::Dial) {
        // Outcomes that lead the same way share an edge.
        let mut blocks: BTreeMap<usize, Vec<Outcome>> = BTreeMap::new();
        for (outcome, resolution) in &dial.routing[self.arm] {
            match resolution {
                Resolution::Block(i) => blocks.entry(*i).or_default().push(*outcome),
                Resolution::Strategy => match self.strategy().and_then(|s| s.rules.get(outcome)) {
                    Some(StrategyRule::Retry { form, .. }) => self.edge(
                        at,
                        Node::Step(at),
                        &format!("{}: {}", outcome.name(), wait(form)),
                    ),
                    _ => self.edge(
                        at,
                        Node::End {
                            completed: false,
                            reason: outcome.name().to_string(),
                        },
                        outcome.name(),
                    ),
                },
                Resolution::Default => {
                    let to = if *outcome == Outcome::Exhausted {
                        exhausted()
                    } else {
                        Node::End {
                            completed: false,
                            reason: outcome.name().to_string(),
                        }
                    };
                    self.edge(at, to, outcome.name());
                }
            }
        }
        for (i, outcomes) in blocks {
            let label: Vec<&str> = outcomes.iter().map(|o| o.name()).collect();
            self.walk(at, &dial.blocks[i], &label.join(", "));
        }
    }
}

fn exhausted() -> Node {
    Node::End {
        completed: false,
        reason: "retries_exhausted".into(),
    }
}

fn join(label: &str, more: &str) -> String {
    if label.is_empty() {
        more.to_string()
    } else {
        format!("{label} · {more}")
    }
}

/// A retry form's wait, short: `15m`, `30m, 1h`, `next day 10:00`.
fn wait(form: &RetryForm) -> String {
    let hhmm = |t: &u16| format!("{:02}:{:02}", t / 60, t % 60);
    let human = crate::check::human_duration;
    match form {
        RetryForm::After { delays_seconds } => delays_seconds
            .iter()
            .map(|d| human(*d))
            .collect::<Vec<_>>()
            .join(", "),
        RetryForm::Backoff {
            first_seconds,
            factor,
            cap_seconds,
        } => {
            let mut s = format!("{} x{factor}", human(*first_seconds));
            if let Some(cap) = cap_seconds {
                s.push_str(&format!(" up to {}", human(*cap)));
            }
            s
        }
        RetryForm::At { times } => {
            format!(
                "at {}",
                times.iter().map(hhmm).collect::<Vec<_>>().join(", ")
            )
        }
        RetryForm::NextDayAt { times } => format!(
            "next day {}",
            times.iter().map(hhmm).collect::<Vec<_>>().join(", ")
        ),
        RetryForm::On { instants } => format!(
            "on {}",
            instants
                .iter()
                .map(|i| i.local.format("%Y-%m-%d %H:%M").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What a step does first, for its node.
fn summary(actions: &[Action]) -> String {
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::Dial(_) => "dial",
            Action::Say { .. } => "say",
            Action::Play { .. } => "play",
            Action::Gather(_) => "gather",
            Action::Record { .. } => "record",
            Action::Transfer(_) => "transfer",
            Action::Set { .. } => "set",
            Action::SendSms { .. } => "sms",
            Action::SendEmail { .. } => "e-mail",
            Action::Flag { .. } => "flag",
            Action::OptOut => "opt out",
            Action::Wait { .. } => "wait",
            Action::If { .. } => "if",
            Action::Goto { .. } => "goto",
            Action::Retry { .. } => "retry",
            Action::End { .. } => "end",
        })
        .filter(|k| !matches!(*k, "goto" | "end"))
        .collect();
    let mut out: Vec<&str> = Vec::new();
    for k in kinds {
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out.join(", ")
}

fn legend(flow: &ir::Flow, arm: &ir::Arm) -> Vec<String> {
    let mut lines = Vec::new();
    match arm.strategy.map(|s| &flow.strategies[s]) {
        Some(s) => {
            let mut line = format!("strategy {}", s.name);
            if let Some(m) = s.max_attempts {
                line.push_str(&format!(": at most {m} attempts"));
            }
            lines.push(line);
            lines.extend(s.rules.iter().map(|(o, r)| match r {
                StrategyRule::Retry { form, .. } => {
                    format!("  on {}: retry {}", o.name(), wait(form))
                }
                StrategyRule::Stop => format!("  on {}: stop", o.name()),
            }));
        }
        None => lines.push("no strategy: no outcome is retried".into()),
    }
    if let Some(c) = arm.calendar.map(|c| &flow.calendars[c]) {
        lines.push(format!("calendar {}", c.name));
    }
    let policies: Vec<&str> = flow
        .compliance
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    if !policies.is_empty() {
        lines.push(format!("compliance {}", policies.join(", ")));
    }
    lines
}

impl Graph {
    fn node_id(&self, node: &Node) -> String {
        match node {
            Node::Step(s) => format!("step_{}", self.steps[*s].0),
            Node::End { .. } => format!(
                "end_{}",
                self.ends.iter().position(|e| e == node).unwrap_or(0)
            ),
        }
    }

    /// Mermaid `flowchart` text.
    pub fn mermaid(&self) -> String {
        let q = |s: &str| s.replace('"', "#quot;");
        let mut out = String::new();
        let _ = writeln!(out, "---\ntitle: \"{}\"\n---", q(&self.title));
        out.push_str("flowchart TD\n");
        for (name, what) in &self.steps {
            let label = if what.is_empty() {
                name.clone()
            } else {
                format!("{name}<br/><small>{what}</small>")
            };
            let _ = writeln!(out, "    step_{name}[\"{}\"]", q(&label));
        }
        for end in &self.ends {
            let Node::End { completed, reason } = end else {
                continue;
            };
            let state = if *completed { "completed" } else { "failed" };
            let label = if reason.is_empty() {
                state.to_string()
            } else {
                format!("{state}: {reason}")
            };
            let _ = writeln!(out, "    {}([\"{}\"])", self.node_id(end), q(&label));
            let class = if *completed { "completed" } else { "failed" };
            let _ = writeln!(out, "    class {} {class}", self.node_id(end));
        }
        for e in &self.edges {
            let (from, to) = (self.node_id(&e.from), self.node_id(&e.to));
            if e.label.is_empty() {
                let _ = writeln!(out, "    {from} --> {to}");
            } else {
                let label = q(&e.label).replace('\n', "<br/>");
                let _ = writeln!(out, "    {from} -->|\"{label}\"| {to}");
            }
        }
        if !self.legend.is_empty() {
            let _ = writeln!(
                out,
                "    legend[\"{}\"]",
                q(&self.legend.join("<br/>")).replace("  ", "&nbsp;&nbsp;")
            );
            out.push_str("    class legend legend\n");
        }
        out.push_str("    classDef completed fill:#e3f2e1,stroke:#2e7d32\n");
        out.push_str("    classDef failed fill:#fdecea,stroke:#b3261e\n");
        out.push_str("    classDef legend fill:#f5f5f5,stroke:#999,text-align:left\n");
        out
    }

    /// Graphviz DOT text.
    pub fn dot(&self) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        out.push_str("digraph flow {\n");
        let _ = writeln!(out, "    label=\"{}\";\n    labelloc=t;", q(&self.title));
        out.push_str(
            "    node [fontname=\"Helvetica\"];\n    edge [fontname=\"Helvetica\", fontsize=10];\n",
        );
        for (name, what) in &self.steps {
            let label = if what.is_empty() {
                name.clone()
            } else {
                format!("{name}\\n{what}")
            };
            // Step names are identifiers and summaries fixed words: nothing to escape.
            let _ = writeln!(
                out,
                "    step_{name} [shape=box, style=rounded, label=\"{label}\"];"
            );
        }
        for end in &self.ends {
            let Node::End { completed, reason } = end else {
                continue;
            };
            let (state, colour) = if *completed {
                ("completed", "#e3f2e1")
            } else {
                ("failed", "#fdecea")
            };
            let label = if reason.is_empty() {
                state.to_string()
            } else {
                format!("{state}\\n{}", q(reason))
            };
            let _ = writeln!(
                out,
                "    {} [shape=oval, style=filled, fillcolor=\"{colour}\", label=\"{label}\"];",
                self.node_id(end)
            );
        }
        for e in &self.edges {
            let _ = writeln!(
                out,
                "    {} -> {} [label=\"{}\"];",
                self.node_id(&e.from),
                self.node_id(&e.to),
                q(&e.label).replace('\n', "\\n")
            );
        }
        if !self.legend.is_empty() {
            let lines: Vec<String> = self.legend.iter().map(|l| format!("{}\\l", q(l))).collect();
            let _ = writeln!(
                out,
                "    legend [shape=note, style=filled, fillcolor=\"#f5f5f5\", label=\"{}\"];",
                lines.join("")
            );
        }
        out.push_str("}\n");
        out
    }
}
