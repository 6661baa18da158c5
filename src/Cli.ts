/**
 * The `effect-ice` command line, built with `@effect/cli`:
 *
 * - `effect-ice stun [host:port ...] [--tcp] [--json]`: sends a Binding request to each server and prints the
 *   mapped (server-reflexive) address, the round-trip time and the server's SOFTWARE. With no server it starts an
 *   embedded STUN server on 127.0.0.1 (an ephemeral port) and queries that, so it works with no outside server.
 * - `effect-ice stun-server [--listen ip:port] [--alternate ip] [--software text]`: runs a STUN server (RFC 5780
 *   when an alternate address is given) until SIGINT or SIGTERM.
 *
 * The commands are plain Effects on the `Network` service; `bin.ts` runs them on `NodeNetwork`.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import { Console, Data, Duration, Effect, Either, Option } from "effect"
import type { Scope } from "effect"
import * as NatBehavior from "./NatBehavior.js"
import * as NatDiscovery from "./NatDiscovery.js"
import type { NetworkError } from "./Network.js"
import { Network } from "./Network.js"
import * as StunMessage from "./StunMessage.js"
import * as StunServer from "./StunServer.js"
import * as StunTransaction from "./StunTransaction.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"
import * as VirtualNetwork from "./VirtualNetwork.js"

/**
 * What `effect-ice stun` learnt from one server.
 *
 * @since 0.1.0
 * @category models
 */
export interface StunResult {
  readonly server: string
  readonly transport: "udp" | "tcp"
  readonly local: string
  readonly mapped: string | null
  readonly rttMs: number
  readonly attempts: number
  readonly software: string | null
  readonly otherAddress: string | null
  readonly responseOrigin: string | null
}

/**
 * A failed query, as `effect-ice stun` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface StunFailure {
  readonly server: string
  readonly transport: "udp" | "tcp"
  readonly error: string
}

const formatAddress = (a: SocketAddress | undefined): string | null =>
  a === undefined ? null : TransportAddress.format(a)

/**
 * Sends one Binding request to `server` over UDP or TCP from a fresh socket and describes the answer.
 *
 * @since 0.1.0
 * @category commands
 */
export const queryServer = (
  server: SocketAddress,
  transport: "udp" | "tcp"
): Effect.Effect<StunResult, StunTransaction.StunTransactionError, Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network
    let local: string
    let client: StunTransaction.StunClient
    if (transport === "udp") {
      const socket = yield* network.bindUdp({ family: server.family })
      local = TransportAddress.format(socket.local)
      client = yield* StunTransaction.makeUdp(socket)
    } else {
      const socket = yield* network.connectTcp(server)
      local = TransportAddress.format(socket.local)
      client = yield* StunTransaction.makeTcp(socket)
    }
    const response = yield* client.request(server, { method: StunMessage.StunMethod.Binding })
    const m = response.message
    return {
      server: TransportAddress.format(server),
      transport,
      local,
      mapped: formatAddress(
        StunMessage.find(m, "XorMappedAddress")?.address ?? StunMessage.find(m, "MappedAddress")?.address
      ),
      rttMs: Duration.toMillis(response.elapsed),
      attempts: response.attempts,
      software: StunMessage.find(m, "Software")?.value ?? null,
      otherAddress: formatAddress(StunMessage.find(m, "OtherAddress")?.address),
      responseOrigin: formatAddress(StunMessage.find(m, "ResponseOrigin")?.address)
    }
  })

/**
 * A server given on the command line that cannot be used: its text does not parse, or its name does not resolve.
 *
 * @since 0.1.0
 * @category errors
 */
export class TargetError extends Data.TaggedError("TargetError")<{ readonly input: string; readonly reason: string }> {
  override get message(): string {
    return `${this.input}: ${this.reason}`
  }
}

/**
 * Resolves `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port` to a socket address, looking names up through
 * the `Network` service (the first address, IPv4 preferred).
 *
 * @since 0.1.0
 * @category commands
 */
export const resolveTarget = (text: string, defaultPort: number): Effect.Effect<SocketAddress, TargetError, Network> =>
  Effect.gen(function*() {
    const literal = TransportAddress.canonicalIp(text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text)
    if (Option.isSome(literal)) return { ...literal.value, port: defaultPort }
    const parsed = TransportAddress.parse(text)
    if (Either.isRight(parsed)) return parsed.right
    const colon = text.lastIndexOf(":")
    const host = colon < 0 ? text : text.slice(0, colon)
    const portText = colon < 0 ? String(defaultPort) : text.slice(colon + 1)
    const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN
    if (!(port >= 1 && port <= 65535) || host.length === 0 || host.includes(":")) {
      return yield* Effect.fail(new TargetError({ input: text, reason: "expected host:port, ip:port or [ipv6]:port" }))
    }
    const network = yield* Network
    const addresses = yield* Effect.mapError(
      network.lookup(host),
      (error) => new TargetError({ input: text, reason: `cannot resolve ${host}: ${error.reason}` })
    )
    return { ...addresses[0]!, port }
  })

const describeResult = (r: StunResult): string =>
  `${r.server} (${r.transport}): mapped ${r.mapped ?? "none"}, rtt ${r.rttMs.toFixed(1)} ms` +
  `${r.attempts > 1 ? ` after ${r.attempts} sends` : ""}, software ${
    r.software === null ? "none" : JSON.stringify(r.software)
  }${r.otherAddress === null ? "" : `, other address ${r.otherAddress}`}, from ${r.local}`

/**
 * The `stun` command's work: query each server (or an embedded one when none is given) and print the results as
 * text or as one JSON object `{ results, failures }`. Fails (exit code 1) when any query failed.
 *
 * @since 0.1.0
 * @category commands
 */
export const stun = (options: {
  readonly servers: ReadonlyArray<string>
  readonly tcp: boolean
  readonly json: boolean
}): Effect.Effect<void, StunQueryFailed | NetworkError, Network> =>
  Effect.scoped(Effect.gen(function*() {
    const transport = options.tcp ? "tcp" : "udp"
    let targets: Array<SocketAddress> = []
    const failures: Array<StunFailure> = []
    if (options.servers.length === 0) {
      const server = yield* StunServer.make({ address: "127.0.0.1", port: 0 })
      targets = [server.primary]
      if (!options.json) yield* Console.log(`embedded STUN server on ${TransportAddress.format(server.primary)}`)
    } else {
      for (const text of options.servers) {
        const target = yield* Effect.either(resolveTarget(text, 3478))
        if (Either.isLeft(target)) failures.push({ server: text, transport, error: target.left.message })
        else targets.push(target.right)
      }
    }
    const results: Array<StunResult> = []
    for (const server of targets) {
      const outcome = yield* Effect.either(Effect.scoped(queryServer(server, transport)))
      if (Either.isRight(outcome)) results.push(outcome.right)
      else failures.push({ server: TransportAddress.format(server), transport, error: outcome.left.message })
    }
    if (options.json) {
      yield* Console.log(JSON.stringify({ results, failures }))
    } else {
      for (const r of results) yield* Console.log(describeResult(r))
      for (const f of failures) yield* Console.error(`${f.server} (${f.transport}): ${f.error}`)
    }
    if (failures.length > 0) return yield* Effect.fail(new StunQueryFailed({ failed: failures.length }))
  }))

/**
 * Some `effect-ice stun` queries failed (each was already reported).
 *
 * @since 0.1.0
 * @category errors
 */
export class StunQueryFailed extends Data.TaggedError("StunQueryFailed")<{ readonly failed: number }> {
  override get message(): string {
    return `${this.failed} STUN ${this.failed === 1 ? "query" : "queries"} failed`
  }
}

/**
 * The `stun-server` command's work: run a server until interrupted, printing where it listens.
 *
 * @since 0.1.0
 * @category commands
 */
export const stunServer = (options: {
  readonly listen: string
  readonly alternate: Option.Option<string>
  readonly software: Option.Option<string>
}): Effect.Effect<void, NetworkError | TargetError, Network> =>
  Effect.scoped(Effect.gen(function*() {
    const listen = yield* Effect.mapError(
      TransportAddress.parse(options.listen),
      (e) => new TargetError({ input: options.listen, reason: e.reason })
    )
    const server = yield* StunServer.make({
      address: listen.ip,
      port: listen.port,
      ...(Option.isSome(options.alternate) ? { alternateAddress: options.alternate.value } : {}),
      ...(Option.isSome(options.software) ? { software: options.software.value } : {})
    })
    for (const endpoint of server.endpoints) yield* Console.log(`listening on ${TransportAddress.key(endpoint)}`)
    return yield* Effect.never
  }))

/**
 * A report in a JSON-friendly shape: addresses as `ip:port` strings, durations in milliseconds.
 *
 * @since 0.1.0
 * @category commands
 */
export const reportToJson = (report: NatDiscovery.NatReport) => ({
  server: TransportAddress.format(report.server),
  otherAddress: TransportAddress.format(report.otherAddress),
  responseOrigin: formatAddress(report.responseOrigin),
  local: TransportAddress.format(report.local),
  mapped: TransportAddress.format(report.mapped),
  natPresent: report.natPresent,
  mapping: report.mapping,
  filtering: report.filtering,
  classicalName: report.classicalName,
  hairpinning: report.hairpinning,
  lifetime: report.lifetime === "untested"
    ? "untested"
    : { lowerBoundMs: report.lifetime.lowerBoundMs, upperBoundMs: report.lifetime.upperBoundMs ?? null },
  directPathLikely: report.directPathLikely,
  algDetected: report.algDetected,
  roundTripMs: Duration.toMillis(report.roundTrip)
})

/**
 * The simulated world `nat-type --simulate` runs in: a STUN server with two public addresses (RFC 5780) and one
 * host in a site behind a NAT with the given behaviour (external address 203.0.113.1). Returns the report.
 *
 * @since 0.1.0
 * @category commands
 */
export const simulateDiscovery = (
  behaviour: NatBehavior.NatBehavior,
  options: { readonly lifetime: boolean }
): Effect.Effect<NatDiscovery.NatReport, NatDiscovery.NatDiscoveryError | VirtualNetwork.TopologyError, Scope.Scope> =>
  Effect.gen(function*() {
    const world = yield* VirtualNetwork.make()
    const stunHost = yield* world.addHost({ name: "stun", addresses: ["198.51.100.1", "198.51.100.2"] })
    yield* world.addSite({ name: "home", nat: behaviour, externalAddresses: ["203.0.113.1"] })
    const client = yield* world.addHost({ name: "client", addresses: ["192.168.1.10"], site: "home" })
    const server = yield* StunServer.make({ address: "198.51.100.1", port: 3478, alternateAddress: "198.51.100.2" })
      .pipe(
        Effect.provide(VirtualNetwork.layer(stunHost)),
        Effect.orDie
      )
    return yield* NatDiscovery.discover({
      server: server.primary,
      tests: { hairpinning: true, lifetime: options.lifetime ? { max: "10 minutes", precision: "1 second" } : false }
    }).pipe(Effect.provide(VirtualNetwork.layer(client)))
  })

/**
 * The `nat-type` command's work: RFC 5780 discovery against a server (or, with `--simulate`, inside the
 * simulator behind a NAT of the given behaviour), printed as one line or as JSON.
 *
 * @since 0.1.0
 * @category commands
 */
export const natType = (options: {
  readonly server: Option.Option<string>
  readonly simulate: Option.Option<string>
  readonly lifetime: boolean
  readonly json: boolean
}): Effect.Effect<void, NatDiscovery.NatDiscoveryError | TargetError | VirtualNetwork.VirtualTimeExceeded, Network> =>
  Effect.gen(function*() {
    let report: NatDiscovery.NatReport
    if (Option.isSome(options.simulate)) {
      const pair = NatBehavior.parsePair(options.simulate.value)
      if (pair === undefined) {
        return yield* Effect.fail(
          new TargetError({ input: options.simulate.value, reason: "expected MAPPING/FILTERING, for example EIM/APDF" })
        )
      }
      const behaviour = NatBehavior.make(pair.mapping, pair.filtering, {
        portAssignment: pair.mapping === "endpoint-independent" ? "preserving" : "random"
      })
      report = yield* VirtualNetwork.runInVirtualTime(simulateDiscovery(behaviour, { lifetime: options.lifetime }), {
        step: "1 second"
      }).pipe(Effect.catchTag("TopologyError", (e) => Effect.die(e)))
      if (!options.json) {
        yield* Console.log(
          `simulated NAT ${options.simulate.value.toUpperCase()} (${
            NatBehavior.classicalName(pair.mapping, pair.filtering)
          }): STUN server 198.51.100.1:3478 / 198.51.100.2:3479, client 192.168.1.10 behind 203.0.113.1`
        )
      }
    } else {
      if (Option.isNone(options.server)) {
        return yield* Effect.fail(
          new TargetError({ input: "", reason: "give --server host:port (an RFC 5780 server) or --simulate EIM/APDF" })
        )
      }
      const server = yield* resolveTarget(options.server.value, 3478)
      report = yield* NatDiscovery.discover({
        server,
        tests: { hairpinning: true, lifetime: options.lifetime }
      })
    }
    yield* Console.log(options.json ? JSON.stringify(reportToJson(report)) : NatDiscovery.format(report))
  })

const natTypeCommand = Command.make(
  "nat-type",
  {
    server: Options.text("server").pipe(
      Options.withDescription("an RFC 5780 STUN server (two IPs), host:port; port 3478 by default"),
      Options.optional
    ),
    simulate: Options.text("simulate").pipe(
      Options.withDescription("run inside the simulator behind a NAT with this behaviour, e.g. EIM/APDF"),
      Options.optional
    ),
    lifetime: Options.boolean("lifetime").pipe(
      Options.withDescription("also measure the mapping lifetime (RFC 5780 §4.6; takes up to minutes on a real NAT)")
    ),
    json: Options.boolean("json").pipe(Options.withDescription("print the report as one JSON object"))
  },
  natType
).pipe(Command.withDescription("Discover NAT mapping and filtering behaviour the RFC 5780 way"))

const stunCommand = Command.make(
  "stun",
  {
    servers: Args.text({ name: "host:port" }).pipe(
      Args.withDescription("STUN servers to query (IP literals; default port 3478). None: an embedded server."),
      Args.repeated
    ),
    tcp: Options.boolean("tcp").pipe(Options.withDescription("query over TCP instead of UDP")),
    json: Options.boolean("json").pipe(Options.withDescription("print one JSON object"))
  },
  stun
).pipe(Command.withDescription("Send a STUN Binding request and print the mapped address, RTT and SOFTWARE"))

const stunServerCommand = Command.make(
  "stun-server",
  {
    listen: Options.text("listen").pipe(
      Options.withDescription("UDP and TCP address to listen on"),
      Options.withDefault("0.0.0.0:3478")
    ),
    alternate: Options.text("alternate").pipe(
      Options.withDescription("a second IP of this host, for RFC 5780 (CHANGE-REQUEST, OTHER-ADDRESS)"),
      Options.optional
    ),
    software: Options.text("software").pipe(Options.withDescription("SOFTWARE attribute value"), Options.optional)
  },
  stunServer
).pipe(Command.withDescription("Run a STUN server until SIGINT or SIGTERM"))

/**
 * The `effect-ice` command with its subcommands.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("effect-ice").pipe(
  Command.withDescription("NAT traversal tools: STUN client and server, NAT type discovery"),
  Command.withSubcommands([stunCommand, stunServerCommand, natTypeCommand])
)

/**
 * Runs the command line on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category commands
 */
export const run = Command.run(command, { name: "effect-ice", version: "0.1.0" })
