// Ringfence for VS Code: starts `ringfence lsp` and connects it to .rf files.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function serverOptions() {
  const config = vscode.workspace.getConfiguration('ringfence');
  const command = config.get('server.command') || 'ringfence';
  const args = ['lsp', ...(config.get('server.args') || [])];
  return { command, args, transport: TransportKind.stdio };
}

async function activate(context) {
  const config = vscode.workspace.getConfiguration('ringfence');
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'ringfence' },
      { scheme: 'file', pattern: '**/tenant.toml' },
    ],
    synchronize: {
      // Saved list files and tenant.toml change what a tenant's check reports.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/{*.rf,*.csv,tenant.toml}'),
    },
    initializationOptions: { rulesRoot: config.get('rulesRoot') || '' },
  };
  client = new LanguageClient('ringfence', 'Ringfence', serverOptions(), clientOptions);
  context.subscriptions.push(
    vscode.commands.registerCommand('ringfence.restartServer', async () => {
      if (client) {
        await client.restart();
      }
    }),
  );
  await client.start();
}

async function deactivate() {
  if (client) {
    await client.stop();
    client = undefined;
  }
}

module.exports = { activate, deactivate, serverOptions };
