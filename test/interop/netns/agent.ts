/**
 * The two programs the network-namespace NAT test runs inside its namespaces, on real sockets (`NodeNetwork`):
 *
 * - `server A1 A2 PORT`: our `StunServer` with RFC 5780 on A1 and A2 (ports PORT and PORT + 1, UDP only); prints
 *   `ready` once its sockets are bound and serves until it is killed.
 * - `client SERVER_IP PORT [LIFETIME_MAX_MS PRECISION_MS]`: `NatDiscovery.discover` against that server; prints the
 *   report as one line of JSON (or `error <message>`) and exits.
 *
 * Run from the repository root as `ip netns exec NS node --import tsx test/interop/netns/agent.ts …` (one process,
 * so the test can stop the server by its PID).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect } from "effect"
import * as NatDiscovery from "../../../src/NatDiscovery.js"
import * as NodeNetwork from "../../../src/NodeNetwork.js"
import * as StunServer from "../../../src/StunServer.js"
import * as StunTransaction from "../../../src/StunTransaction.js"

const [mode, ...args] = process.argv.slice(2)

const server = (a1: string, a2: string, port: number) =>
  Effect.scoped(Effect.gen(function*() {
    yield* StunServer.make({ address: a1, alternateAddress: a2, port, tcp: false })
    yield* Console.log("ready")
    return yield* Effect.never
  }))

const client = (ip: string, port: number, lifetime: NatDiscovery.LifetimeOptions | undefined) =>
  NatDiscovery.discover({
    server: { family: "IPv4", ip, port },
    tests: { hairpinning: true, lifetime: lifetime ?? false }
  }).pipe(
    // Bounded: transactions give up after 0.1 + 0.2 + 0.4 + 4 × 0.4 s; quiet tests after 1 s.
    Effect.provideService(StunTransaction.Rto, Duration.millis(100)),
    Effect.provideService(StunTransaction.Rc, 3),
    Effect.provideService(StunTransaction.Rm, 4),
    Effect.flatMap((report) => Console.log(JSON.stringify(report))),
    Effect.catchAll((error) => Console.log(`error ${error.message}`))
  )

const program = mode === "server"
  ? server(args[0]!, args[1]!, Number(args[2]))
  : mode === "client"
  ? client(
    args[0]!,
    Number(args[1]),
    args[2] === undefined ? undefined : { max: Duration.millis(Number(args[2])), precision: Number(args[3]) }
  )
  : Effect.dieMessage("usage: agent.ts server A1 A2 PORT | client SERVER_IP PORT [LIFETIME_MAX_MS PRECISION_MS]")

program.pipe(Effect.provide(NodeNetwork.layer), NodeRuntime.runMain)
