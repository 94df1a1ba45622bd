//! The program's namespace: every top-level item of the root file and of the
//! files it uses, with duplicates reported against their first definition.

use std::collections::HashMap;

use super::calendar::PRESETS;
use super::diagnostics as diag;
use crate::diagnostic::Diagnostic;
use crate::source::FileId;
use crate::syntax::ast;

pub struct Scope<'a> {
    pub calendars: Vec<&'a ast::Calendar>,
    pub strategies: Vec<&'a ast::Strategy>,
    pub compliances: Vec<&'a ast::Compliance>,
    pub schema: Option<&'a ast::Schema>,
    pub flow: Option<&'a ast::Flow>,
    pub tests: Vec<&'a ast::Test>,
    calendar_index: HashMap<&'a str, usize>,
    strategy_index: HashMap<&'a str, usize>,
    compliance_index: HashMap<&'a str, usize>,
    broken: Vec<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn build(files: &'a [(FileId, ast::File)], diags: &mut Vec<Diagnostic>) -> Scope<'a> {
        let mut scope = Scope {
            calendars: Vec::new(),
            strategies: Vec::new(),
            compliances: Vec::new(),
            schema: None,
            flow: None,
            tests: Vec::new(),
            calendar_index: HashMap::new(),
            strategy_index: HashMap::new(),
            compliance_index: HashMap::new(),
            broken: Vec::new(),
        };
        for (_, file) in files {
            scope.broken.extend(file.broken.iter().map(String::as_str));
            for item in &file.items {
                match item {
                    ast::Item::Use(_) => {}
                    ast::Item::Contact(s) => match scope.schema {
                        Some(first) => diags.push(diag::duplicate(
                            "contact schema",
                            "contact",
                            s.span,
                            first.span,
                        )),
                        None => scope.schema = Some(s),
                    },
                    ast::Item::Calendar(c) => {
                        if let Some(&i) = scope.calendar_index.get(c.name.node.as_str()) {
                            diags.push(diag::duplicate(
                                "calendar",
                                &c.name.node,
                                c.name.span,
                                scope.calendars[i].name.span,
                            ));
                        } else {
                            scope
                                .calendar_index
                                .insert(&c.name.node, scope.calendars.len());
                            scope.calendars.push(c);
                        }
                    }
                    ast::Item::Strategy(s) => {
                        if let Some(&i) = scope.strategy_index.get(s.name.node.as_str()) {
                            diags.push(diag::duplicate(
                                "strategy",
                                &s.name.node,
                                s.name.span,
                                scope.strategies[i].name.span,
                            ));
                        } else {
                            scope
                                .strategy_index
                                .insert(&s.name.node, scope.strategies.len());
                            scope.strategies.push(s);
                        }
                    }
                    ast::Item::Compliance(c) => {
                        if PRESETS.iter().any(|p| p.name == c.name.node) {
                            diags.push(diag::duplicate_preset(&c.name.node, c.name.span));
                        } else if let Some(&i) = scope.compliance_index.get(c.name.node.as_str()) {
                            diags.push(diag::duplicate(
                                "compliance policy",
                                &c.name.node,
                                c.name.span,
                                scope.compliances[i].name.span,
                            ));
                        } else {
                            scope
                                .compliance_index
                                .insert(&c.name.node, scope.compliances.len());
                            scope.compliances.push(c);
                        }
                    }
                    ast::Item::Flow(f) => match scope.flow {
                        Some(first) => {
                            diags.push(diag::several_flows(f.name.span, first.name.span))
                        }
                        None => scope.flow = Some(f),
                    },
                    ast::Item::Test(t) => scope.tests.push(t),
                }
            }
        }
        scope
    }

    /// An item of this name exists but could not be parsed (already reported).
    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.contains(&name)
    }

    pub fn calendar(&self, name: &str) -> Option<usize> {
        self.calendar_index.get(name).copied()
    }

    pub fn strategy(&self, name: &str) -> Option<usize> {
        self.strategy_index.get(name).copied()
    }

    pub fn compliance(&self, name: &str) -> Option<usize> {
        self.compliance_index.get(name).copied()
    }

    pub fn calendar_names(&self) -> Vec<&'a str> {
        self.calendars
            .iter()
            .map(|c| c.name.node.as_str())
            .collect()
    }

    pub fn strategy_names(&self) -> Vec<&'a str> {
        self.strategies
            .iter()
            .map(|c| c.name.node.as_str())
            .collect()
    }

    pub fn compliance_names(&self) -> Vec<&'a str> {
        PRESETS
            .iter()
            .map(|p| p.name)
            .chain(self.compliances.iter().map(|c| c.name.node.as_str()))
            .collect()
    }
}
