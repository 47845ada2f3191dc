// Preloaded (node --require) by the interop tests: refuses, and reports on stderr, any TCP connection that would
// leave loopback, before any DNS look-up. Node's http and https (hence @azure/identity and @azure/msal-node) connect
// through net.Socket.prototype.connect, tls.connect included.
"use strict";
const net = require("node:net");

const MARK = "INTEROP-GUARD-REFUSED";
const original = net.Socket.prototype.connect;
let connects = 0; // loopback connections let through: proves the clients' connections pass this guard
process.on("exit", () => process.stderr.write(`INTEROP-GUARD-CONNECTS ${connects}\n`));

function isLoopback(host) {
  if (host === undefined || host === null || host === "" || host === "localhost") return true;
  const bare = String(host).replace(/^\[|\]$/g, "");
  if (net.isIPv4(bare)) return bare.startsWith("127.");
  if (net.isIPv6(bare)) return bare === "::1" || bare.toLowerCase().startsWith("::ffff:127.");
  return false;
}

net.Socket.prototype.connect = function guardedConnect(...args) {
  let options = args[0];
  if (Array.isArray(options)) options = options[0];
  let host;
  if (options !== null && typeof options === "object") {
    if (options.path) return original.apply(this, args);
    host = options.host;
  } else if (typeof options === "number" || (typeof options === "string" && /^\d+$/.test(options))) {
    host = typeof args[1] === "string" ? args[1] : undefined;
  } else {
    return original.apply(this, args); // an IPC path
  }
  if (!isLoopback(host)) {
    process.stderr.write(`${MARK} ${host}\n`);
    const error = new Error(`interop guard: no connection off loopback (${host})`);
    error.code = "ECONNREFUSED";
    process.nextTick(() => this.destroy(error));
    return this;
  }
  connects += 1;
  return original.apply(this, args);
};
