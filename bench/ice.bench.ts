/**
 * ICE benchmarks.
 *
 * (a) Time to connected, in virtual ms, and connectivity checks sent (both agents) for the classical 4 × 4 NAT table
 *     on the simulated internet, with a STUN and a TURN server (so the cells that need a relay connect through it):
 *     `iceScenario.runPairing`, the same worlds as `test/sim/ice-matrix.test.ts`. Deterministic; printed as a table.
 * (b) Agents per process: N pairs of agents connecting at once on loopback with real sockets (NodeNetwork, host
 *     candidates only on 127.0.0.1, no STUN or TURN), for N = 10, 50, 100, 200, 400, 800 until connecting all of them
 *     takes longer than `limitSeconds` or one fails. Per N: the wall time until every agent was made and until
 *     every agent is connected (and the process's CPU time until then), the agents' own median and slowest time
 *     to connected (from each one's start), and the heap and RSS growth per agent while they are all connected
 *     (after a GC when run with `--expose-gc`; RSS is noisy at small N).
 *
 * Run: `npx tsx bench/ice.bench.ts`, or with GC between measurements: `node --expose-gc --import tsx
 * bench/ice.bench.ts`. No peer implementation is run here, so there is no ratio column.
 */
import { Effect, Exit, Option, Scope } from "effect"
import * as IceAgent from "../src/IceAgent.js"
import * as Scenario from "../src/internal/iceScenario.js"
import * as NatBehavior from "../src/NatBehavior.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"

const limitSeconds = 20
const sizes = [10, 50, 100, 200, 400, 800]

// -----------------------------------------------------------------------------------------------------------------
// (a) the classical table in virtual time
// -----------------------------------------------------------------------------------------------------------------

const classical: ReadonlyArray<readonly [string, NatBehavior.NatBehavior]> = [
  ["full cone", NatBehavior.fullCone],
  ["restricted", NatBehavior.restrictedCone],
  ["port-restricted", NatBehavior.portRestrictedCone],
  ["symmetric", NatBehavior.symmetric]
]

const matrix = Effect.gen(function*() {
  const width = 30
  const lines = [
    "(a) classical 4 × 4 with STUN and TURN: Alice's pair, virtual ms to connected, checks (both agents)",
    "A \\ B".padEnd(18) + classical.map(([name]) => name.padEnd(width)).join("")
  ]
  let wall = 0
  for (const [nameA, natA] of classical) {
    let line = nameA.padEnd(18)
    for (const [, natB] of classical) {
      const started = performance.now()
      const r = yield* Scenario.runPairing({ a: { nat: natA }, b: { nat: natB }, turn: true })
      wall += performance.now() - started
      const cell = r.outcome === "failed"
        ? `FAILED ${r.failureTag}`
        : `${r.outcome} ${r.pair} ${r.virtualMs} ms ${r.checks}`
      line += cell.padEnd(width)
    }
    lines.push(line)
  }
  lines.push(`(16 pairings simulated in ${(wall / 1000).toFixed(1)} s of wall time)`)
  console.log(lines.join("\n"))
})

// -----------------------------------------------------------------------------------------------------------------
// (b) agents per process on loopback
// -----------------------------------------------------------------------------------------------------------------

/** NodeNetwork that lists only the IPv4 loopback interface, so each agent has exactly one host candidate. */
const loopbackOnly = Effect.map(NodeNetwork.make, (network): Network.Service => ({
  ...network,
  interfaces: Effect.succeed([{ name: "lo", family: "IPv4", address: "127.0.0.1", prefixLength: 8, internal: true }])
}))

const gc = (globalThis as { gc?: () => void }).gc

const memory = () => {
  gc?.()
  gc?.()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, rss: m.rss }
}

interface Round {
  readonly pairs: number
  readonly connected: number
  readonly failed: number
  readonly wallMs: number
  /** Until every agent was made (gathering started, signalling piped). */
  readonly madeMs: number
  /** CPU time (user + system) of the process until every agent was connected. */
  readonly cpuMs: number
  readonly medianMs: number
  readonly maxMs: number
  readonly heapPerAgentKb: number
  readonly rssPerAgentKb: number
}

const round = (network: Network.Service, pairs: number) =>
  Effect.gen(function*() {
    const before = memory()
    const scope = yield* Scope.make()
    const cpuBefore = process.cpuUsage()
    const started = performance.now()
    const options: IceAgent.Options = { includeLoopback: true, families: ["IPv4"], stunServers: [], turnServers: [] }
    const agents = yield* Effect.forEach(
      Array.from({ length: pairs }, (_, i) => i),
      () =>
        Effect.gen(function*() {
          const a = yield* IceAgent.make({ ...options, controlling: true })
          const b = yield* IceAgent.make({ ...options, controlling: false })
          yield* IceAgent.pipeSignalling(a, b)
          return [a, b] as const
        }),
      { concurrency: "unbounded" }
    ).pipe(Effect.provideService(Network.Network, network), Scope.extend(scope))
    const all = agents.flat()
    const madeMs = performance.now() - started
    const outcomes = yield* Effect.forEach(all, (agent) => Effect.either(agent.connected), {
      concurrency: "unbounded"
    }).pipe(Effect.timeoutOption(`${limitSeconds} seconds`))
    const wallMs = performance.now() - started
    const cpu = process.cpuUsage(cpuBefore)
    const after = memory()
    const stats = yield* Effect.forEach(all, (agent) => agent.stats)
    const times = stats.flatMap((s) => s.connectedAfterMs === undefined ? [] : [s.connectedAfterMs]).sort((x, y) =>
      x - y
    )
    const connected = Option.match(outcomes, {
      onNone: () => times.length,
      onSome: (list) => list.filter((o) => o._tag === "Right").length
    })
    yield* Scope.close(scope, Exit.void)
    const result: Round = {
      pairs,
      connected,
      failed: all.length - connected,
      wallMs: Option.isNone(outcomes) ? Infinity : wallMs,
      madeMs,
      cpuMs: (cpu.user + cpu.system) / 1000,
      medianMs: times[Math.floor(times.length / 2)] ?? NaN,
      maxMs: times[times.length - 1] ?? NaN,
      heapPerAgentKb: (after.heap - before.heap) / all.length / 1024,
      rssPerAgentKb: (after.rss - before.rss) / all.length / 1024
    }
    return result
  })

const perProcess = Effect.gen(function*() {
  const network = yield* loopbackOnly
  console.log(
    `\n(b) agent pairs connecting at once on 127.0.0.1 (real sockets, host candidates only)` +
      `${gc === undefined ? "; memory without GC (run with --expose-gc for steadier figures)" : "; memory after GC"}`
  )
  console.log(
    "pairs".padStart(6) + "agents".padStart(8) + "connected".padStart(11) + "made in ms".padStart(12) +
      "all in ms".padStart(11) + "cpu ms".padStart(9) +
      "median ms".padStart(11) + "max ms".padStart(9) + "heap/agent".padStart(13) + "rss/agent".padStart(12)
  )
  for (const pairs of sizes) {
    const r = yield* round(network, pairs)
    console.log(
      String(r.pairs).padStart(6) + String(2 * r.pairs).padStart(8) + String(r.connected).padStart(11) +
        r.madeMs.toFixed(0).padStart(12) +
        (Number.isFinite(r.wallMs) ? r.wallMs.toFixed(0) : `>${limitSeconds}000`).padStart(11) +
        r.cpuMs.toFixed(0).padStart(9) +
        String(r.medianMs).padStart(11) + String(r.maxMs).padStart(9) +
        `${r.heapPerAgentKb.toFixed(0)} KiB`.padStart(13) + `${r.rssPerAgentKb.toFixed(0)} KiB`.padStart(12)
    )
    if (r.failed > 0 || !Number.isFinite(r.wallMs)) {
      console.log(`stopped: ${r.failed} of ${2 * r.pairs} agents not connected within ${limitSeconds} s`)
      break
    }
  }
})

Effect.runPromise(Effect.zipRight(matrix, perProcess)).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
