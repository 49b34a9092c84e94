// legacy.mjs — a tiny MCP server of the 2025-11-25 era (initialize first) for limpet's tests.
// Newline-delimited JSON-RPC on stdin/stdout, written by hand so that every byte is known.
//
//   node legacy.mjs [--notify-before-init] [--exit-at-once STATUS] [--crash-status STATUS]
//
// --notify-before-init  writes a notifications/message line before the initialize response
// --exit-at-once N      exits with status N as soon as it starts (a server that cannot start)
// --crash-status N      the status the "crash" tool exits with (7)
//
// Tools: count (a counter kept across calls: the state a session must keep), whoami (pid and
// counters), crash (exits mid-call, never answers), slow {ms} (answers after ms), stats (what
// this process has seen: initialize requests, notifications/initialized, unparseable lines).
// It exits 0 when its stdin closes, like a well-behaved stdio server.
import process from "node:process";
import readline from "node:readline";

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const value = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? Number(argv[i + 1]) : dflt;
};

if (argv.includes("--exit-at-once")) {
  process.stderr.write("legacy: told to exit at once\n");
  process.exit(value("--exit-at-once", 1));
}

const crashStatus = value("--crash-status", 7);
const seen = { initialize: 0, initialized: 0, badLines: 0, lines: 0, slowPending: 0, methods: [] };
let counter = 0;

const TOOLS = ["count", "whoami", "crash", "slow", "stats"].map((name) => ({
  name, description: "limpet test tool " + name,
  inputSchema: { type: "object", properties: { ms: { type: "number" } } },
}));

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function result(id, value) {
  send({ jsonrpc: "2.0", id, result: value });
}

function text(id, obj) {
  result(id, { content: [{ type: "text", text: JSON.stringify(obj) }], structuredContent: obj });
}

function callTool(id, params) {
  const args = params.arguments || {};
  switch (params.name) {
    case "count":
      counter += 1;
      return text(id, { count: counter, pid: process.pid });
    case "whoami":
      return text(id, { pid: process.pid, count: counter });
    case "stats":
      return text(id, { pid: process.pid, ...seen });
    case "slow":
      seen.slowPending += 1;
      setTimeout(() => {
        seen.slowPending -= 1;
        text(id, { slept: args.ms || 0, pid: process.pid });
      }, args.ms || 0);
      return undefined;
    case "crash":
      process.stderr.write("legacy: the crash tool was called, exiting now\n");
      setTimeout(() => process.exit(crashStatus), 20);
      return undefined;
    default:
      return send({ jsonrpc: "2.0", id, error: { code: -32602, message: "no tool " + params.name } });
  }
}

function initialize(id, params) {
  seen.initialize += 1;
  if (flag("--notify-before-init")) {
    send({ jsonrpc: "2.0", method: "notifications/message",
      params: { level: "info", logger: "legacy", data: "hello before the initialize result" } });
  }
  result(id, {
    protocolVersion: params.protocolVersion || "2025-11-25",
    capabilities: { tools: {}, logging: {} },
    serverInfo: { name: "limpet-legacy-test", version: "1.0.0" },
    instructions: "a test server; started at " + Date.now() + " by pid " + process.pid,
  });
}

function handle(msg) {
  if (typeof msg.method !== "string") return; // a response to nothing we asked: ignore
  seen.methods.push(msg.method);
  if (msg.id === undefined) {
    if (msg.method === "notifications/initialized") seen.initialized += 1;
    return;
  }
  const params = msg.params || {};
  if (msg.method === "initialize") return initialize(msg.id, params);
  if (msg.method === "ping") return result(msg.id, {});
  if (msg.method === "tools/list") return result(msg.id, { tools: TOOLS });
  if (msg.method === "tools/call") return callTool(msg.id, params);
  return send({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "no method " + msg.method } });
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  seen.lines += 1;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    seen.badLines += 1;
    return send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "legacy test server: parse error" } });
  }
  if (msg && typeof msg === "object" && !Array.isArray(msg)) handle(msg);
});
rl.on("close", () => process.exit(0));
process.stderr.write("legacy: started pid " + process.pid + "\n");
