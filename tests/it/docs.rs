//! Every ```flow block of the documentation is checked: a block marked
//! `flow` must check clean (no error, no warning); one marked `flow CODE`
//! must report that code. The reference cannot drift from the compiler.

use crate::root;

/// (line of the block, info string, text) of every ```flow block.
fn flow_blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match open.as_mut() {
            None => {
                if let Some(info) = line.strip_prefix("```flow") {
                    open = Some((n + 1, info.trim().to_string(), String::new()));
                }
            }
            Some((_, _, body)) => {
                if line.trim_start() == "```" {
                    blocks.push(open.take().expect("a block is open"));
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a ```flow block is not closed");
    blocks
}

/// A documentation block in memory, as if it were a file of `docs/`; the
/// files it names are read from the disk.
struct BlockLoader<'a> {
    path: &'a std::path::Path,
    body: &'a str,
}

impl flowc::check::Loader for BlockLoader<'_> {
    fn load(&self, path: &std::path::Path) -> std::io::Result<String> {
        if path == self.path {
            Ok(self.body.to_string())
        } else {
            flowc::check::FsLoader.load(path)
        }
    }
}

#[test]
fn every_flow_block_of_the_docs_checks_as_it_says() {
    let mut checked = 0;
    for doc in ["docs/language.md", "README.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for (line, info, body) in flow_blocks(&text) {
            // The README's excerpt uses a shared file and elides steps (`…`).
            if body.contains('…') || body.contains("use \"") {
                continue;
            }
            // A block that reads a calendar file reads it beside the docs.
            let c = if body.contains(" from \"") {
                let path = root().join("docs").join(format!("block_{line}.flow"));
                flowc::check::check(
                    &path,
                    &BlockLoader {
                        path: &path,
                        body: &body,
                    },
                )
                .unwrap()
            } else {
                flowc::check::check_source(&format!("{doc}:{line}"), &body)
            };
            let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
            if info.is_empty() {
                assert!(
                    codes.is_empty(),
                    "{doc}:{line}: the example reports {codes:?}\n{}",
                    crate::render(&c)
                );
            } else {
                assert!(
                    codes.contains(&info.as_str()),
                    "{doc}:{line}: the example should report {info}, it reports {codes:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} examples were checked");
}

/// `flowc explain` names a section of the reference for every code, and
/// the section exists.
#[test]
fn every_code_links_to_a_section_of_the_reference() {
    let text = std::fs::read_to_string(root().join("docs/language.md")).unwrap();
    let anchors: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    for code in flowc::diagnostic::Code::ALL {
        let section = flowc::diagnostic::reference_section(*code);
        assert!(
            anchors.iter().any(|a| a == section),
            "{code} links to #{section}, which docs/language.md does not have ({anchors:?})"
        );
        let shown = flowc::diagnostic::explanation(*code).render();
        assert!(shown.contains(&format!("docs/language.md#{section}")));
    }
}
