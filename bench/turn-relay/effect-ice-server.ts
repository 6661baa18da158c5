/**
 * effect-ice's TURN server for the TURN relay benchmark: `TurnServer.make` on `NodeNetwork.layer`, UDP only, on one
 * IP and port 0, relaying on the same IP (ports from the OS), with the benchmark's static user, loopback peers
 * allowed (`allowPeers: ["127.0.0.0/8"]`, as coturn's `--allow-loopback-peers`) and the quotas raised to 20,000
 * allocations (per user and in all) so that the memory scenario can create 10,000. Every other option is at its
 * default (SOFTWARE, lifetimes, nonce lifetime, sweeper, metrics).
 *
 * Usage: `node --import tsx bench/turn-relay/effect-ice-server.ts <ip>`. Prints `{"port":N}` on stdout once the
 * socket is bound, and runs until killed.
 */
import { Effect } from "effect"
import * as NodeNetwork from "../../src/NodeNetwork.js"
import * as TurnServer from "../../src/TurnServer.js"
import type { ServerReady } from "./protocol.js"
import { credentials } from "./protocol.js"

const address = process.argv[2] ?? "127.0.0.1"

const program = Effect.gen(function*() {
  const server = yield* TurnServer.make({
    addresses: [address],
    port: 0,
    realm: credentials.realm,
    users: { [credentials.username]: credentials.password },
    allowPeers: ["127.0.0.0/8"],
    userQuota: 20_000,
    totalQuota: 20_000,
    // 10,000 allocations come from one loopback IP: the per-source limit on unauthenticated answers (50/s by
    // default) would throttle the memory run's first requests. coturn and node-turn have no such limit.
    unauthenticatedRateLimit: 0
  })
  const ready: ServerReady = { port: server.udp[0]!.port }
  // The memory benchmark asks for a full collection before each RSS reading (`--expose-gc`).
  process.on("SIGUSR2", () => (globalThis as { gc?: () => void }).gc?.())
  process.stdout.write(JSON.stringify(ready) + "\n")
  return yield* Effect.never
}).pipe(Effect.scoped, Effect.provide(NodeNetwork.layer))

Effect.runPromise(program).catch((error: unknown) => {
  process.stderr.write(`effect-ice-server: ${String(error)}\n`)
  process.exit(1)
})

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
