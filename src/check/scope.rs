//! The program's namespace: every top-level item of the root file and of the
//! files it uses, with duplicates reported against their first definition.

use std::collections::HashMap;

use super::calendar::PRESETS;
use super::diagnostics as diag;
use crate::diagnostic::Diagnostic;
use crate::source::FileId;
use crate::syntax::ast;

/// Items of one kind, by name, in definition order.
pub struct Table<'a, T> {
    pub items: Vec<&'a T>,
    index: HashMap<&'a str, usize>,
}

impl<'a, T> Table<'a, T> {
    fn new() -> Self {
        Table {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds an item unless its name is taken; a second definition is reported
    /// against the first.
    fn add(
        &mut self,
        item: &'a T,
        name: &'a ast::Ident,
        kind: &str,
        name_of: fn(&T) -> &ast::Ident,
        diags: &mut Vec<Diagnostic>,
    ) {
        match self.index.get(name.node.as_str()) {
            Some(&i) => diags.push(diag::duplicate(
                kind,
                &name.node,
                name.span,
                name_of(self.items[i]).span,
            )),
            None => {
                self.index.insert(&name.node, self.items.len());
                self.items.push(item);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn names(&self, name_of: fn(&T) -> &ast::Ident) -> Vec<&'a str> {
        self.items
            .iter()
            .map(|i| name_of(i).node.as_str())
            .collect()
    }
}

pub struct Scope<'a> {
    pub calendars: Table<'a, ast::Calendar>,
    pub strategies: Table<'a, ast::Strategy>,
    pub compliances: Table<'a, ast::Compliance>,
    pub schema: Option<&'a ast::Schema>,
    pub flow: Option<&'a ast::Flow>,
    pub tests: Vec<&'a ast::Test>,
    broken: Vec<&'a str>,
}

impl<'a> Scope<'a> {
    pub fn build(files: &'a [(FileId, ast::File)], diags: &mut Vec<Diagnostic>) -> Scope<'a> {
        let mut calendars = Table::new();
        let mut strategies = Table::new();
        let mut compliances = Table::new();
        let mut schema: Option<&ast::Schema> = None;
        let mut flow: Option<&ast::Flow> = None;
        let mut tests = Vec::new();
        let mut broken = Vec::new();
        for (_, file) in files {
            broken.extend(file.broken.iter().map(String::as_str));
            for item in &file.items {
                match item {
                    ast::Item::Use(_) => {}
                    ast::Item::Contact(s) => match schema {
                        Some(first) => diags.push(diag::duplicate(
                            "contact schema",
                            "contact",
                            s.span,
                            first.span,
                        )),
                        None => schema = Some(s),
                    },
                    ast::Item::Calendar(c) => {
                        calendars.add(c, &c.name, "calendar", |c| &c.name, diags)
                    }
                    ast::Item::Strategy(s) => {
                        strategies.add(s, &s.name, "strategy", |s| &s.name, diags)
                    }
                    ast::Item::Compliance(c) if PRESETS.iter().any(|p| p.name == c.name.node) => {
                        diags.push(diag::duplicate_preset(&c.name.node, c.name.span))
                    }
                    ast::Item::Compliance(c) => {
                        compliances.add(c, &c.name, "compliance policy", |c| &c.name, diags)
                    }
                    ast::Item::Flow(f) => match flow {
                        Some(first) => {
                            diags.push(diag::several_flows(f.name.span, first.name.span))
                        }
                        None => flow = Some(f),
                    },
                    ast::Item::Test(t) => tests.push(t),
                }
            }
        }
        Scope {
            calendars,
            strategies,
            compliances,
            schema,
            flow,
            tests,
            broken,
        }
    }

    /// An item of this name exists but could not be parsed (already reported).
    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.contains(&name)
    }

    pub fn calendar(&self, name: &str) -> Option<usize> {
        self.calendars.get(name)
    }

    pub fn strategy(&self, name: &str) -> Option<usize> {
        self.strategies.get(name)
    }

    pub fn compliance(&self, name: &str) -> Option<usize> {
        self.compliances.get(name)
    }

    pub fn calendar_names(&self) -> Vec<&'a str> {
        self.calendars.names(|c| &c.name)
    }

    pub fn strategy_names(&self) -> Vec<&'a str> {
        self.strategies.names(|s| &s.name)
    }

    pub fn compliance_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        names.extend(self.compliances.names(|c| &c.name));
        names
    }
}
