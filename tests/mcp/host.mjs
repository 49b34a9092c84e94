// host.mjs — a real MCP host for limpet's tests: the official SDK's Client over its
// StdioClientTransport, spawning `limpet mcp ...` (or any stdio MCP server command).
//
//   node host.mjs SPEC_JSON
//
// SPEC: {"hosts": [HOST, ...]}  (run concurrently) or one HOST at the top level.
// HOST: {"label": "a", "command": "/abs/limpet", "args": [...], "env": {...},
//        "timeout_ms": 30000, "exit_timeout_ms": 10000, "pace_ms": 0, "steps": [STEP, ...]}
// STEP: {"op": "call", "name": TOOL, "arguments": {...}, "progress": true}
//       {"op": "list_tools"} | {"op": "ping"}
// A failing step is reported and the host goes on with the next one.
//
// Output, one JSON object a line on stdout:
//   {"label", "event": "connected", "server": {name, version}, "capabilities": {...}}
//   {"label", "event": "step", "i", "op", "ok", "result" | "error": {code, message},
//    "sdk_progress": [{progress, total}, ...]}   (what the SDK's onprogress saw)
//   {"label", "event": "progress", "step", "progress", "total", "token", "late"}
//     every notifications/progress as it came off the wire, with the step running then;
//     late: it came after that step's response. (The SDK's own onprogress is not enough:
//     it runs notification handlers a tick later than responses, so it drops a last
//     progress that arrives with the response, with no limpet in between too.)
//   {"label", "event": "sampling" | "elicitation", "n", "text"}   (a server-to-client request)
//   {"label", "event": "exit", "code", "signal"}   (the spawned command's end after stdin closed)
//   {"label", "event": "fatal", "message"}          (connect failed, ...)
// and {"event": "done"} last. Every wait is bounded; the process exits by itself.
import process from "node:process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const HARD_LIMIT_MS = 170000; // the driver never outlives this, whatever happens

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function errorOf(e) {
  return { code: e && e.code !== undefined ? e.code : null, message: String(e && e.message) };
}

async function runStep(client, spec, step, i) {
  const label = spec.label || "host";
  const timeout = step.timeout_ms || spec.timeout_ms || 30000;
  const base = { label, event: "step", i, op: step.op };
  const sdkProgress = [];
  try {
    let result;
    if (step.op === "call") {
      const opts = { timeout, resetTimeoutOnProgress: false, maxTotalTimeout: timeout };
      if (step.progress) opts.onprogress = (p) => sdkProgress.push({ progress: p.progress, total: p.total });
      result = await client.callTool({ name: step.name, arguments: step.arguments || {} },
        CallToolResultSchema, opts);
    } else if (step.op === "list_tools") {
      result = await client.listTools(undefined, { timeout });
    } else if (step.op === "ping") {
      result = await client.ping({ timeout });
    } else {
      throw new Error("unknown op " + step.op);
    }
    emit({ ...base, ok: true, result, sdk_progress: sdkProgress });
  } catch (e) {
    emit({ ...base, ok: false, error: errorOf(e), sdk_progress: sdkProgress });
  }
}

function waitExit(child, ms) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const t = setTimeout(() => resolve({ code: null, signal: "still running" }), ms);
    child.once("exit", (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

async function runHost(spec) {
  const label = spec.label || "host";
  const client = new Client({ name: "limpet-test-host", version: "1.0.0" },
    { capabilities: spec.capabilities || { sampling: {}, elicitation: {} } });
  let sampling = 0;
  let elicitation = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    sampling += 1;
    const msg = req.params.messages[0];
    const text = msg && msg.content && msg.content.text;
    emit({ label, event: "sampling", n: sampling, text });
    return { model: "limpet-test-model", role: "assistant", stopReason: "endTurn",
      content: { type: "text", text: "sampled #" + sampling + ": " + text } };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    elicitation += 1;
    emit({ label, event: "elicitation", n: elicitation, text: req.params.message });
    return { action: "accept", content: { name: "limpet elicitation #" + elicitation,
      check: true, email: "host@example.invalid", integer: 7 } };
  });
  const transport = new StdioClientTransport({
    command: spec.command, args: spec.args || [],
    env: { ...process.env, ...(spec.env || {}) }, stderr: "inherit",
  });
  try {
    await client.connect(transport, { timeout: spec.timeout_ms || 30000 });
  } catch (e) {
    emit({ label, event: "fatal", message: "connect: " + String(e && e.message) });
    const child = transport._process;
    if (child) emit({ label, event: "exit", ...(await closeChild(child, transport, spec)) });
    return;
  }
  const child = transport._process;
  emit({ label, event: "connected", server: client.getServerVersion(),
    capabilities: client.getServerCapabilities() });
  // Watch the wire below the SDK: progress notifications and responses, in arrival order.
  const wire = { step: -1, answered: false };
  const sdkOnMessage = transport.onmessage;
  transport.onmessage = (msg, extra) => {
    if (msg.method === "notifications/progress") {
      const p = msg.params || {};
      emit({ label, event: "progress", step: wire.step, progress: p.progress, total: p.total,
        token: p.progressToken, late: wire.answered });
    } else if (msg.method === undefined && msg.id !== undefined) {
      wire.answered = true; // the running step's response (the host sends one at a time)
    }
    sdkOnMessage.call(transport, msg, extra);
  };
  const steps = spec.steps || [];
  for (let i = 0; i < steps.length; i++) {
    // pace_ms spreads the calls over time (a host that thinks between calls), so that the
    // link faults a test injects land between and inside them, not after them all
    if (i && spec.pace_ms) await new Promise((resolve) => setTimeout(resolve, spec.pace_ms));
    wire.step = i;
    wire.answered = false;
    await runStep(client, spec, steps[i], i);
  }
  emit({ label, event: "exit", ...(await closeChild(child, transport, spec)) });
}

// Closes the command's stdin the way a host does and reports how it ended.
async function closeChild(child, transport, spec) {
  if (!child) return { code: null, signal: "gone before close" };
  try {
    child.stdin.end();
  } catch {
    // already closed
  }
  const res = await waitExit(child, spec.exit_timeout_ms || 10000);
  await transport.close().catch(() => {});
  if (res.signal === "still running") {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  return res;
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const hosts = spec.hosts || [spec];
  await Promise.all(hosts.map((h) => runHost(h).catch((e) =>
    emit({ label: h.label, event: "fatal", message: String(e && e.stack) }))));
  emit({ event: "done" });
  process.exit(0);
}

setTimeout(() => {
  emit({ event: "fatal", message: "host.mjs hard limit reached" });
  process.exit(2);
}, HARD_LIMIT_MS).unref();

main();
