/**
 * The npm `node-turn` server (Atlantis-Software/node-turn 0.0.6) for the TURN relay benchmark, started as its
 * README shows (`new Turn({ … }).start()`): long-term credentials with the benchmark's user, listening and relaying
 * on one loopback IP, on a port found free at run time by the parent (the package binds the port it is given and
 * does not report it), relay ports 32768–60999 (the kernel's ephemeral range, which effect-ice's relays use; coturn
 * gets the same), log level FATAL (fatal messages go to stderr).
 *
 * node-turn has no peer address policy (every peer is allowed, loopback too) and no quotas (`checkQuota` always
 * says yes), so nothing else needs to be set.
 *
 * Usage: `node --import tsx bench/turn-relay/node-turn-server.ts <ip> <port>`. Prints `{"port":N}` on stdout once
 * `start()` has returned (the bind is asynchronous: the parent probes with Binding requests), and runs until killed.
 */
import { createRequire } from "node:module"
import type { ServerReady } from "./protocol.js"
import { credentials } from "./protocol.js"

/** The part of node-turn's API used here (the package ships no type declarations). */
interface NodeTurnServer {
  start(): void
  stop(): void
}
type NodeTurnConstructor = new(options: Record<string, unknown>) => NodeTurnServer

const Turn = createRequire(import.meta.url)("node-turn") as NodeTurnConstructor

const address = process.argv[2] ?? "127.0.0.1"
const port = Number(process.argv[3])
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("node-turn-server: usage: node-turn-server.ts <ip> <port>\n")
  process.exit(1)
}

const server = new Turn({
  listeningIps: [address],
  relayIps: [address],
  listeningPort: port,
  minPort: 32768,
  maxPort: 60999,
  authMech: "long-term",
  credentials: { [credentials.username]: credentials.password },
  realm: credentials.realm,
  debugLevel: "FATAL",
  log: (message: unknown) => process.stderr.write(`node-turn: ${String(message)}\n`)
})
server.start()
const ready: ServerReady = { port }
// The memory benchmark asks for a full collection before each RSS reading (`--expose-gc`).
process.on("SIGUSR2", () => (globalThis as { gc?: () => void }).gc?.())
process.stdout.write(JSON.stringify(ready) + "\n")

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
