//! `flowc lsp`: a language server over standard input and output, on
//! `tower-lsp-server`. Every change of a document is checked at once (with
//! the files it uses, open ones as the editor holds them); the last IR that
//! checked clean serves hovers while the file has errors.

mod analysis;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use analysis::{Analysis, Kind};

/// Runs the server until the client exits.
pub fn serve() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime starts");
    runtime.block_on(async {
        let (service, socket) = LspService::new(|client| Backend {
            client,
            documents: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
        });
        Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
            .serve(service)
            .await;
    });
}

struct Backend {
    client: Client,
    /// Open documents by path.
    documents: Mutex<HashMap<PathBuf, String>>,
    /// The last program of each document that checked clean.
    last_good: Mutex<HashMap<PathBuf, crate::ir::Program>>,
}

/// Files as the editor holds them, else as on disk.
struct Overlay<'a>(&'a HashMap<PathBuf, String>);

impl crate::check::Loader for Overlay<'_> {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        match self.0.get(path) {
            Some(text) => Ok(text.clone()),
            None => crate::check::FsLoader.load(path),
        }
    }
}

fn path_of(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|p| p.into_owned())
}

fn uri_of(path: &Path) -> Option<Uri> {
    Uri::from_file_path(path)
}

/// A byte offset as an LSP position (UTF-16 columns).
fn position(text: &str, at: usize) -> Position {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count() as u32;
    let character = text[line_start..at].encode_utf16().count() as u32;
    Position { line, character }
}

/// An LSP position as a byte offset.
fn offset(text: &str, p: Position) -> usize {
    let mut start = 0;
    for _ in 0..p.line {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let line = &text[start..];
    let mut units = 0;
    for (i, c) in line.char_indices() {
        if units >= p.character as usize || c == '\n' {
            return start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

fn range(text: &str, start: usize, end: usize) -> Range {
    Range {
        start: position(text, start),
        end: position(text, end),
    }
}

impl Backend {
    fn analyse(&self, path: &Path) -> Option<(Analysis, String)> {
        let documents = self.documents.lock().ok()?;
        let text = match documents.get(path) {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(path).ok()?,
        };
        let analysis = analysis::analyse(path, &Overlay(&documents))?;
        Some((analysis, text))
    }

    /// The document at a position: its path, its analysis, its text and
    /// the position as a byte offset.
    fn at(&self, p: &TextDocumentPositionParams) -> Option<(PathBuf, Analysis, String, usize)> {
        let path = path_of(&p.text_document.uri)?;
        let (analysis, text) = self.analyse(&path)?;
        let at = offset(&text, p.position);
        Some((path, analysis, text, at))
    }

    fn text_of(&self, path: &Path) -> Option<String> {
        let documents = self.documents.lock().ok()?;
        documents
            .get(path)
            .cloned()
            .or_else(|| std::fs::read_to_string(path).ok())
    }

    async fn publish(&self, uri: Uri, version: Option<i32>) {
        let Some(path) = path_of(&uri) else { return };
        let Some((analysis, text)) = self.analyse(&path) else {
            return;
        };
        if let Some(program) = &analysis.compilation.program {
            if let Ok(mut last) = self.last_good.lock() {
                last.insert(path.clone(), program.clone());
            }
        }
        let diagnostics = analysis::diagnostics_of(&analysis.compilation, &path)
            .into_iter()
            .map(|(d, start, end)| lsp_diagnostic(d, &text, start, end))
            .collect();
        self.client
            .publish_diagnostics(uri, diagnostics, version)
            .await;
    }

    fn location(&self, place: &analysis::Place) -> Option<Location> {
        let text = self.text_of(&place.path)?;
        Some(Location {
            uri: uri_of(&place.path)?,
            range: range(&text, place.start, place.end),
        })
    }
}

fn lsp_diagnostic(
    d: &crate::diagnostic::Diagnostic,
    text: &str,
    start: usize,
    end: usize,
) -> Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    if let Some(note) = &d.note {
        message.push_str(&format!("\nnote: {note}"));
    }
    message.push_str(&format!(
        "\nsee docs/language.md#{} and `flowc explain {}`",
        crate::diagnostic::reference_section(d.code),
        d.code.as_str()
    ));
    Diagnostic {
        range: range(text, start, end),
        severity: Some(match d.severity {
            crate::diagnostic::Severity::Error => DiagnosticSeverity::ERROR,
            crate::diagnostic::Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        source: Some("flowc".into()),
        message,
        ..Default::default()
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, _: InitializeParams) -> Result<InitializeResult> {
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::FULL,
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into(), " ".into(), "\"".into()]),
                    ..Default::default()
                }),
                document_symbol_provider: Some(OneOf::Left(true)),
                document_formatting_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "flowc".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            ..Default::default()
        })
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        if let (Some(path), Ok(mut documents)) = (path_of(&doc.uri), self.documents.lock()) {
            documents.insert(path, doc.text);
        }
        self.publish(doc.uri, Some(doc.version)).await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let doc = params.text_document;
        let Some(change) = params.content_changes.into_iter().last() else {
            return;
        };
        if let (Some(path), Ok(mut documents)) = (path_of(&doc.uri), self.documents.lock()) {
            documents.insert(path, change.text);
        }
        self.publish(doc.uri, Some(doc.version)).await;
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let (Some(path), Ok(mut documents)) =
            (path_of(&params.text_document.uri), self.documents.lock())
        {
            documents.remove(&path);
        }
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let Some((path, analysis, text, at)) = self.at(&params.text_document_position_params)
        else {
            return Ok(None);
        };
        let last = self
            .last_good
            .lock()
            .ok()
            .and_then(|l| l.get(&path).cloned());
        Ok(analysis
            .hover(&path, &text, at, last.as_ref())
            .map(|value| Hover {
                contents: HoverContents::Markup(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value,
                }),
                range: None,
            }))
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let Some((path, analysis, text, at)) = self.at(&params.text_document_position_params)
        else {
            return Ok(None);
        };
        Ok(analysis
            .definition_at(&path, &text, at)
            .and_then(|d| {
                self.location(&analysis::Place {
                    path: d.path.clone(),
                    start: d.start,
                    end: d.end,
                })
            })
            .map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let Some((path, analysis, text, at)) = self.at(&params.text_document_position) else {
            return Ok(None);
        };
        let Some(def) = analysis.definition_at(&path, &text, at) else {
            return Ok(None);
        };
        Ok(Some(
            analysis
                .references(def)
                .iter()
                .filter_map(|place| self.location(place))
                .collect(),
        ))
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let p = params.text_document_position;
        let Some(path) = path_of(&p.text_document.uri) else {
            return Ok(None);
        };
        let Some(text) = self.text_of(&path) else {
            return Ok(None);
        };
        let analysis = self.analyse(&path).map(|(a, _)| a);
        let at = offset(&text, p.position);
        let items = analysis::completions(analysis.as_ref(), &text, at)
            .into_iter()
            .map(|(label, detail)| CompletionItem {
                label,
                detail: Some(detail),
                ..Default::default()
            })
            .collect();
        Ok(Some(CompletionResponse::Array(items)))
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let Some(path) = path_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let Some((analysis, text)) = self.analyse(&path) else {
            return Ok(None);
        };
        #[allow(deprecated)]
        let symbols = analysis::symbols(&analysis, &path)
            .into_iter()
            .map(|(name, kind, start, end)| DocumentSymbol {
                name,
                detail: Some(kind.word().into()),
                kind: match kind {
                    Kind::Step => SymbolKind::FUNCTION,
                    Kind::Flow => SymbolKind::MODULE,
                    Kind::Strategy | Kind::Calendar | Kind::Compliance => SymbolKind::STRUCT,
                    Kind::Field | Kind::Arm => SymbolKind::FIELD,
                },
                tags: None,
                deprecated: None,
                range: range(&text, start, end),
                selection_range: range(&text, start, end),
                children: None,
            })
            .collect();
        Ok(Some(DocumentSymbolResponse::Nested(symbols)))
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let Some(path) = path_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let Some(text) = self.text_of(&path) else {
            return Ok(None);
        };
        let (_, diags) = crate::syntax::parse(crate::source::FileId(0), &text);
        if diags
            .iter()
            .any(|d| d.code == crate::diagnostic::Code::Syntax)
        {
            return Ok(None);
        }
        let formatted = crate::syntax::fmt::format(&text);
        if formatted == text {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(vec![TextEdit {
            range: range(&text, 0, text.len()),
            new_text: formatted,
        }]))
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let Some((path, analysis, text, at)) = self.at(&params.text_document_position) else {
            return Ok(None);
        };
        let Some(def) = analysis.definition_at(&path, &text, at) else {
            return Ok(None);
        };
        let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
        for place in analysis.references(def) {
            if let Some(location) = self.location(&place) {
                changes.entry(location.uri).or_default().push(TextEdit {
                    range: location.range,
                    new_text: params.new_name.clone(),
                });
            }
        }
        Ok(Some(WorkspaceEdit {
            changes: Some(changes),
            ..Default::default()
        }))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let Some(path) = path_of(&uri) else {
            return Ok(None);
        };
        let Some((analysis, text)) = self.analyse(&path) else {
            return Ok(None);
        };
        let wanted = offset(&text, params.range.start)..=offset(&text, params.range.end);
        let mut actions = Vec::new();
        for (d, start, end) in analysis::diagnostics_of(&analysis.compilation, &path) {
            if end < *wanted.start() || start > *wanted.end() {
                continue;
            }
            for fix in analysis::fixes(d, &text) {
                let edit = TextEdit {
                    range: range(&text, fix.start, fix.end),
                    new_text: fix.text,
                };
                actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                    title: fix.title,
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![lsp_diagnostic(d, &text, start, end)]),
                    edit: Some(WorkspaceEdit {
                        changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                        ..Default::default()
                    }),
                    is_preferred: Some(true),
                    ..Default::default()
                }));
            }
        }
        Ok(Some(actions))
    }
}
