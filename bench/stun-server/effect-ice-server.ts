/**
 * effect-ice's STUN server for the STUN server benchmark: `StunServer.make` on `NodeNetwork.layer`, UDP only
 * (`tcp: false`), on one IP and port 0, every other option at its default (SOFTWARE "effect-ice", the
 * retransmission cache of RFC 8489 §6.3.1 on, RFC 3489 answers on, no alternate address).
 *
 * `--no-cache` turns the retransmission cache off (`maxCacheEntries: 0`), to measure what it costs.
 *
 * Usage: `node --import tsx bench/stun-server/effect-ice-server.ts <ip> [--no-cache]`. Prints `{"port":N}` on stdout once the
 * socket is bound, and runs until killed.
 */
import { Effect } from "effect"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as StunServer from "../../src/StunServer.js"
import type { ServerReady } from "./protocol.js"

const address = process.argv[2] ?? "127.0.0.1"
const noCache = process.argv.includes("--no-cache")

const program = Effect.gen(function*() {
  const server = yield* StunServer.make({ address, port: 0, tcp: false, ...(noCache ? { maxCacheEntries: 0 } : {}) })
  const ready: ServerReady = { port: server.primary.port }
  process.stdout.write(JSON.stringify(ready) + "\n")
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(NodeNetwork.layer))

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(`effect-ice-server: ${String(error)}\n`)
  process.exit(1)
})

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
