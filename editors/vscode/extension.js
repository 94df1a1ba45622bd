// The client: starts `flowc lsp` (the `flowc.path` setting names the
// program) for .flow files, and stops it with the editor.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("flowc").get("path") || "flowc";
  client = new LanguageClient(
    "flowc",
    "flowc",
    { command, args: ["lsp"] },
    { documentSelector: [{ scheme: "file", language: "flow" }] }
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
