// VS Code client for the gateway's LSP door: `gateway lsp` over stdio, or a running `gateway serve` over TCP.
import * as net from "node:net";
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  State,
  type LanguageClientOptions,
  type ServerOptions,
  type StreamInfo,
} from "vscode-languageclient/node";

const CLIENT_ID = "gateway";
const CLIENT_NAME = "Gateway";
const COMMAND_PREFIX = "gateway.";

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel | undefined;

/** A TCP address from the `gateway.tcp` setting: `host:port`, `[v6]:port` or `:port` (loopback). */
export function parseAddress(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`gateway.tcp must be host:port (e.g. 127.0.0.1:2087), got "${value}"`);
  }
  const host = match[1] ?? match[2] ?? "";
  return { host: host === "" ? "127.0.0.1" : host, port };
}

/** Connect to `gateway serve --lsp-port`; resolves once the socket is open, rejects on a connect error. */
function connectTcp(host: string, port: number): Promise<StreamInfo> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const onError = (error: Error): void => {
      reject(new Error(`cannot connect to the gateway at ${host}:${String(port)}: ${error.message}`));
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve({ reader: socket, writer: socket });
    });
  });
}

/** How to reach the gateway, from the settings: TCP when `gateway.tcp` is set, else the stdio command. */
function serverOptions(config: vscode.WorkspaceConfiguration, folder: string | undefined): ServerOptions {
  const tcp = config.get<string>("tcp", "").trim();
  if (tcp !== "") {
    const { host, port } = parseAddress(tcp);
    return () => connectTcp(host, port);
  }
  const command = config.get<string[]>("command", ["gateway", "lsp"]);
  const [program, ...args] = command;
  if (program === undefined || program === "") {
    throw new Error("gateway.command must name a program, e.g. [\"gateway\", \"lsp\"]");
  }
  if (folder !== undefined) {
    args.push("--workspace", folder);
  }
  return { command: program, args, options: folder !== undefined ? { cwd: folder } : {} };
}

function createClient(): LanguageClient {
  const config = vscode.workspace.getConfiguration("gateway");
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const configured = config.get<string>("token", "");
  const token = configured !== "" ? configured : (process.env.GATEWAY_TOKEN ?? "");
  output ??= vscode.window.createOutputChannel(CLIENT_NAME, { log: true });
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }],
    outputChannel: output,
    initializationOptions: token !== "" ? { token } : {},
  };
  return new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions(config, folder), clientOptions);
}

async function start(): Promise<void> {
  try {
    client = createClient();
    await client.start();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    output?.error(message);
    void vscode.window.showErrorMessage(`Gateway: ${message}`);
  }
}

async function stop(): Promise<void> {
  const running = client;
  client = undefined;
  if (running?.needsStop()) {
    await running.stop();
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

/** The `gateway.<capability>` commands the server advertised at initialize. */
function serverCommands(running: LanguageClient): string[] {
  const provider = running.initializeResult?.capabilities.executeCommandProvider;
  return (provider?.commands ?? []).filter((name) => name.startsWith(COMMAND_PREFIX)).sort();
}

function parseParams(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text === "" ? "{}" : text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
  } catch {
    // reported by the caller
  }
  return undefined;
}

/** Command palette: pick any gateway command, give its params as a JSON object, see the result as JSON. */
async function runCommand(): Promise<void> {
  const running = client;
  if (running?.state !== State.Running) {
    void vscode.window.showErrorMessage("Gateway: the language server is not running.");
    return;
  }
  const picked = await vscode.window.showQuickPick(
    serverCommands(running).map((name) => ({ label: name.slice(COMMAND_PREFIX.length), command: name })),
    { placeHolder: "Gateway command", matchOnDescription: true },
  );
  if (picked === undefined) {
    return;
  }
  const editor = vscode.window.activeTextEditor;
  const path = editor ? vscode.workspace.asRelativePath(editor.document.uri, false) : undefined;
  const text = await vscode.window.showInputBox({
    title: `${picked.command}: params (one JSON object)`,
    value: "{}",
    ...(path !== undefined ? { prompt: `The active file is "${path}"` } : {}),
    validateInput: (value) => (parseParams(value) ? undefined : "Enter a JSON object, e.g. {\"path\": \"main.py\"}"),
  });
  if (text === undefined) {
    return;
  }
  const params = parseParams(text) ?? {};
  try {
    const result: unknown = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Gateway: ${picked.label}`, cancellable: true },
      (_progress, cancel) =>
        running.sendRequest(ExecuteCommandRequest.type, { command: picked.command, arguments: [params] }, cancel),
    );
    const document = await vscode.workspace.openTextDocument({
      language: "json",
      content: JSON.stringify(result, null, 2) + "\n",
    });
    await vscode.window.showTextDocument(document, { preview: true });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    void vscode.window.showErrorMessage(`Gateway: ${picked.label} failed: ${message}`);
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.commands.registerCommand("gatewayClient.runCommand", runCommand),
    vscode.commands.registerCommand("gatewayClient.restart", restart),
    vscode.commands.registerCommand("gatewayClient.showOutput", () => {
      output?.show(true);
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      const relevant = ["gateway.command", "gateway.tcp", "gateway.token"];
      if (relevant.some((key) => event.affectsConfiguration(key))) {
        void restart();
      }
    }),
    { dispose: () => void stop() },
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await stop();
  output?.dispose();
  output = undefined;
}
