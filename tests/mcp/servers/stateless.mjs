// stateless.mjs — a tiny MCP server of the 2026-07-28 era for limpet's tests: no initialize,
// `server/discover` says what it can do, and every request carries the protocol version in
// params._meta. It still keeps state across calls (a counter), which is what a session keeps.
// The SDK pinned in package.json speaks only up to 2025-11-25, hence this hand-written one.
//
// Methods: server/discover; tools/list; tools/call with tools count (counter + 1), stats
// (what it has seen). A request without params._meta.protocolVersion "2026-07-28" gets
// -32602; initialize gets -32601 (and is counted, so a test can tell limpet never sent one).
// It exits 0 when its stdin closes.
import process from "node:process";
import readline from "node:readline";

const VERSION = "2026-07-28";
const seen = { initialize: 0, discover: 0, calls: 0, methods: [] };
let counter = 0;

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function error(id, code, message) {
  send({ jsonrpc: "2.0", id, error: { code, message } });
}

function result(id, value) {
  send({ jsonrpc: "2.0", id, result: { ...value, _meta: { protocolVersion: VERSION } } });
}

function tool(id, params) {
  seen.calls += 1;
  if (params.name === "count") {
    counter += 1;
    return result(id, { content: [{ type: "text", text: String(counter) }],
      structuredContent: { count: counter, pid: process.pid } });
  }
  if (params.name === "stats") {
    return result(id, { content: [{ type: "text", text: JSON.stringify(seen) }],
      structuredContent: { pid: process.pid, count: counter, ...seen } });
  }
  return error(id, -32602, "no tool " + params.name);
}

function handle(msg) {
  if (typeof msg.method !== "string" || msg.id === undefined) return;
  seen.methods.push(msg.method);
  const params = msg.params || {};
  if (msg.method === "initialize") {
    seen.initialize += 1;
    return error(msg.id, -32601, "stateless server: there is no initialize in " + VERSION);
  }
  const meta = params._meta || {};
  if (meta.protocolVersion !== VERSION) {
    return error(msg.id, -32602, "params._meta.protocolVersion must be " + VERSION);
  }
  if (msg.method === "server/discover") {
    seen.discover += 1;
    return result(msg.id, {
      supportedVersions: [VERSION],
      capabilities: { tools: { listChanged: false } },
      serverInfo: { name: "limpet-stateless-test", version: "1.0.0" },
    });
  }
  if (msg.method === "tools/list") {
    return result(msg.id, { tools: ["count", "stats"].map((name) => ({
      name, inputSchema: { type: "object" } })) });
  }
  if (msg.method === "tools/call") return tool(msg.id, params);
  return error(msg.id, -32601, "no method " + msg.method);
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return error(null, -32700, "stateless test server: parse error");
  }
  if (msg && typeof msg === "object" && !Array.isArray(msg)) handle(msg);
});
rl.on("close", () => process.exit(0));
process.stderr.write("stateless: started pid " + process.pid + "\n");
