//! `flowc lsp` spoken to as an editor does: JSON-RPC over the server's
//! standard input and output.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Client {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    /// Notifications read while waiting for something else.
    pending: Vec<Value>,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            input,
            output,
            next_id: 1,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.input, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.input.flush().unwrap();
    }

    fn read(&mut self) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.output.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length: ") {
                length = n.parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.output.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.read();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.pending.push(m);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        loop {
            let found = self.pending.iter().position(|m| {
                m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
            });
            if let Some(k) = found {
                let m = self.pending.remove(k);
                return m["params"]["diagnostics"].as_array().unwrap().clone();
            }
            let m = self.read();
            self.pending.push(m);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The LSP position of the `nth` occurrence of `needle` (plus `ahead` characters).
fn at(text: &str, needle: &str, nth: usize, ahead: usize) -> Value {
    let start = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle} #{nth} not in the text"))
        .0
        + ahead;
    let line = text[..start].matches('\n').count();
    let column = start - text[..start].rfind('\n').map_or(0, |i| i + 1);
    json!({"line": line, "character": column})
}

fn offset(text: &str, p: &Value) -> usize {
    let line = p["line"].as_u64().unwrap() as usize;
    let character = p["character"].as_u64().unwrap() as usize;
    let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
    start + character
}

/// Applies the text edits of one file (last first, so offsets hold).
fn apply(text: &str, edits: &[Value]) -> String {
    let mut edits: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(text, &e["range"]["start"]),
                offset(text, &e["range"]["end"]),
                e["newText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

const FLOW: &str = r#"use "office.flow"

contact {
  phone: phone
  name: text
}

strategy standard {
  max attempts 3
  on busy retry after 15m
}

flow demo {
  timezone phone, "America/New_York"
  calendar office
  strategy standard
  compliance tcpa
  step call {
    dial contact.phone
    on answered -> greting
    on other -> end failed
  }
  step greeting {
    say "Hello {contact.name}"
    end completed
  }
}
"#;

#[test]
fn an_editor_session() {
    let dir = std::env::temp_dir().join(format!("flowc-lsp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo.flow");
    std::fs::write(&path, FLOW).unwrap();
    std::fs::write(
        dir.join("office.flow"),
        "calendar office {\n  hours mon-fri 09:00-18:00\n}\n",
    )
    .unwrap();
    let uri = format!("file://{}", path.display());
    let doc = json!({"uri": uri});

    let mut c = Client::start();
    let init = c.request("initialize", json!({"capabilities": {}}));
    assert_eq!(init["capabilities"]["renameProvider"], true, "{init}");
    c.notify("initialized", json!({}));

    // A misspelt step: the diagnostic, with its code and help.
    let opened = Instant::now();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "flow", "version": 1, "text": FLOW}}),
    );
    let diags = c.diagnostics(&uri);
    eprintln!(
        "diagnostics of a {}-line file in {:?}",
        FLOW.lines().count(),
        opened.elapsed()
    );
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "E0201");
    let message = diags[0]["message"].as_str().unwrap();
    assert!(message.contains("did you mean `greeting`?"), "{message}");
    assert!(message.contains("docs/language.md#"), "{message}");

    // The quick fix applies the did-you-mean, and the file is clean.
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": doc, "range": diags[0]["range"], "context": {"diagnostics": diags}}),
    );
    let action = &actions[0];
    assert_eq!(action["title"], "replace with `greeting`", "{actions}");
    let fixed = apply(FLOW, action["edit"]["changes"][&uri].as_array().unwrap());
    assert!(fixed.contains("on answered -> greeting"));
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    assert_eq!(c.diagnostics(&uri), Vec::<Value>::new());

    // Hover: a field's type; a strategy's attempt timeline.
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": doc, "position": at(&fixed, "contact.name", 0, 9)}),
    );
    assert!(
        hover["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("`name`: text"),
        "{hover}"
    );
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": doc, "position": at(&fixed, "strategy standard", 1, 10)}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(
        shown.contains("at most 3 attempt(s)") && shown.contains("busy → ≥15m later"),
        "{shown}"
    );

    // A calendar of a used file: its week on hover, its definition there.
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": doc, "position": at(&fixed, "calendar office", 0, 10)}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(
        shown.contains("callable windows, calendar office") && shown.contains("09:00-18:00"),
        "{shown}"
    );
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": doc, "position": at(&fixed, "calendar office", 0, 10)}),
    );
    assert!(
        def["uri"].as_str().unwrap().ends_with("/office.flow"),
        "{def}"
    );
    assert_eq!(def["range"]["start"], json!({"line": 0, "character": 9}));

    // Go to definition, and find references.
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": doc, "position": at(&fixed, "-> greeting", 0, 4)}),
    );
    assert_eq!(
        def["range"]["start"],
        at(&fixed, "step greeting", 0, 5),
        "{def}"
    );
    let refs = c.request(
        "textDocument/references",
        json!({"textDocument": doc, "position": at(&fixed, "greeting", 0, 1), "context": {"includeDeclaration": true}}),
    );
    assert_eq!(refs.as_array().unwrap().len(), 2, "{refs}");

    // Completion: fields after `contact.`; outcomes not routed yet after `on `.
    let fields = c.request(
        "textDocument/completion",
        json!({"textDocument": doc, "position": at(&fixed, "contact.phone", 0, 8)}),
    );
    let labels: Vec<&str> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"phone") && labels.contains(&"name"),
        "{labels:?}"
    );
    let with_on = fixed.replace(
        "    on other -> end failed\n",
        "    on other -> end failed\n    on \n",
    );
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": with_on}]}),
    );
    let _ = c.diagnostics(&uri);
    let outcomes = c.request(
        "textDocument/completion",
        json!({"textDocument": doc, "position": at(&with_on, "    on \n", 0, 7)}),
    );
    let labels: Vec<&str> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"busy") && !labels.contains(&"answered") && !labels.contains(&"other"),
        "{labels:?}"
    );

    // Rename a step: its definition and every route to it.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 4}, "contentChanges": [{"text": fixed}]}),
    );
    let _ = c.diagnostics(&uri);
    let edit = c.request(
        "textDocument/rename",
        json!({"textDocument": doc, "position": at(&fixed, "step greeting", 0, 6), "newName": "welcome"}),
    );
    let renamed = apply(&fixed, edit["changes"][&uri].as_array().unwrap());
    assert!(
        renamed.contains("step welcome") && renamed.contains("-> welcome"),
        "{renamed}"
    );
    assert!(!renamed.contains("greeting"));

    // Missing routes: the quick fix adds them, and the file is clean.
    let missing = renamed.replace("    on other -> end failed\n", "");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 5}, "contentChanges": [{"text": missing}]}),
    );
    let diags = c.diagnostics(&uri);
    assert_eq!(diags[0]["code"], "E0401", "{diags:?}");
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": doc, "range": diags[0]["range"], "context": {"diagnostics": diags}}),
    );
    let add = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"].as_str().unwrap().starts_with("add routes"))
        .expect("an action that adds the routes");
    let completed = apply(&missing, add["edit"]["changes"][&uri].as_array().unwrap());
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 6}, "contentChanges": [{"text": completed}]}),
    );
    assert_eq!(c.diagnostics(&uri), Vec::<Value>::new(), "{completed}");

    // Symbols and formatting.
    let symbols = c.request("textDocument/documentSymbol", json!({"textDocument": doc}));
    let names: Vec<&str> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["standard", "demo", "call", "welcome"]);
    let messy = completed.replace("    dial contact.phone", "        dial    contact.phone");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 7}, "contentChanges": [{"text": messy}]}),
    );
    let _ = c.diagnostics(&uri);
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": doc, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let formatted = apply(&messy, edits.as_array().unwrap());
    assert_eq!(formatted, flowc::syntax::fmt::format(&completed));

    // A 1,000-line file: how long from a change to its diagnostics (the
    // figure of BENCHMARKS.md, from a release build: `cargo test --release
    // --test it -- lsp:: --nocapture`).
    let mut large = String::from("contact {\n  phone: phone\n  name: text\n}\n\nflow large {\n  timezone phone, \"UTC\"\n  compliance tcpa\n");
    let steps = 125;
    for k in 0..steps {
        let next = if k + 1 < steps {
            format!("goto s{}", k + 1)
        } else {
            "end completed".into()
        };
        large.push_str(&format!(
            "  step s{k} {{\n    dial contact.phone detect voicemail\n    on answered -> {{ say \"Hello {{contact.name}}\"; {next} }}\n    on voicemail -> end completed \"vm\"\n    on busy -> retry after 15m max 2\n    on other -> end failed \"no\"\n    on exhausted -> end failed \"tried\"\n  }}\n"
        ));
    }
    large.push_str("}\n");
    let lines = large.lines().count();
    let mut timings = Vec::new();
    for version in 8..13 {
        let changed = large.replace("s0 {", &format!("s0 {{ // v{version}"));
        let sent = Instant::now();
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": changed}]}),
        );
        let diags = c.diagnostics(&uri);
        timings.push(sent.elapsed());
        assert!(diags.iter().all(|d| d["severity"] != 1), "{diags:?}");
    }
    timings.sort();
    eprintln!(
        "diagnostics of a {lines}-line file after a change: min {:?}, median {:?}",
        timings[0], timings[2]
    );
    assert!(lines >= 1000, "{lines}");

    let _ = c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_dir_all(&dir).ok();
}
