/**
 * The `effect-ice` command line, built with `@effect/cli`:
 *
 * - `effect-ice stun [host:port ...] [--tcp] [--json]`: sends a Binding request to each server and prints the
 *   mapped (server-reflexive) address, the round-trip time and the server's SOFTWARE. With no server it starts an
 *   embedded STUN server on 127.0.0.1 (an ephemeral port) and queries that, so it works with no outside server.
 * - `effect-ice stun-server [--listen ip:port] [--alternate ip] [--software text]`: runs a STUN server (RFC 5780
 *   when an alternate address is given) until SIGINT or SIGTERM.
 * - `effect-ice turn-server [--listen ip:port ...] [--user name:password ...] [--config file] ...`: runs a TURN server
 *   (UDP and TCP on each `--listen` address, TLS with `--cert`/`--key`) and optionally a Prometheus endpoint
 *   (`--metrics-port`), until SIGINT or SIGTERM, then releases everything and exits 0. The flags, the configuration
 *   file (flags win over it) and the defaults are those of `TurnServerConfig`. It prints one line per listener:
 *   `listening udp 127.0.0.1:3478`, `listening tcp …`, `listening tls …`, then `relay 127.0.0.1` per relay address
 *   and `metrics http://127.0.0.1:9641/metrics`. The metrics endpoint listens on the first `--listen` IP, or on
 *   the loopback address of its family when that IP is a wildcard.
 *
 * The commands are plain Effects on the `Network` service; `bin.ts` runs them on `NodeNetwork`.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Console, Data, Duration, Effect, Either, Option } from "effect"
import type { Scope } from "effect"
import * as NatBehavior from "./NatBehavior.js"
import * as NatDiscovery from "./NatDiscovery.js"
import type { NetworkError } from "./Network.js"
import { Network } from "./Network.js"
import * as Prometheus from "./Prometheus.js"
import * as StunMessage from "./StunMessage.js"
import * as StunServer from "./StunServer.js"
import * as StunTransaction from "./StunTransaction.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"
import * as TurnServer from "./TurnServer.js"
import * as TurnServerConfig from "./TurnServerConfig.js"
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

const repeatedText = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.repeated)
const optionalText = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.optional)
const optionalInteger = (name: string, pseudo: string, description: string) =>
  Options.integer(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.optional)

/**
 * The flags of `effect-ice turn-server`. Each key is a `TurnServerConfig` setting name (the same name as in the
 * configuration file), except `config`, the file itself.
 *
 * @since 0.1.0
 * @category commands
 */
export const turnServerFlags = {
  "listen": repeatedText(
    "listen",
    "IP:PORT",
    `UDP and TCP address (repeatable; all on one port; a bare IP means port 3478; default ${TurnServerConfig.defaultListen})`
  ),
  "tls-listen": repeatedText(
    "tls-listen",
    "IP:PORT",
    "TURN over TLS address (repeatable; default: --listen IPs, 5349)"
  ),
  "cert": optionalText("cert", "FILE", "TLS certificate chain (PEM file)"),
  "key": optionalText("key", "FILE", "TLS private key (PEM file)"),
  "realm": optionalText("realm", "REALM", `REALM (default ${TurnServer.defaultRealm})`),
  "user": repeatedText("user", "NAME:PASSWORD", "a long-term credential (repeatable)"),
  "auth-secret": repeatedText("auth-secret", "SECRET", "a TURN REST shared secret (repeatable, for rotation)"),
  "relay-ip": repeatedText(
    "relay-ip",
    "IP",
    "IP relayed sockets are bound on, one per family (default: first --listen IP)"
  ),
  "relay-ports": optionalText("relay-ports", "LO-HI", "port range of relayed sockets (default: any)"),
  "external-ip": repeatedText(
    "external-ip",
    "IP",
    "public IP advertised for the relay (behind 1:1 NAT), one per family"
  ),
  "allow-peer": repeatedText("allow-peer", "CIDR", "peer range allowed even if denied by default, e.g. 127.0.0.0/8"),
  "deny-peer": repeatedText("deny-peer", "CIDR", "peer range always refused (wins over --allow-peer)"),
  "max-allocations": optionalInteger(
    "max-allocations",
    "N",
    `allocations in all (default ${TurnServer.defaultTotalQuota})`
  ),
  "user-quota": optionalInteger("user-quota", "N", `allocations per user (default ${TurnServer.defaultUserQuota})`),
  "max-bps": optionalInteger("max-bps", "N", "relayed bytes per second per allocation (default or 0: unlimited)"),
  "unauthenticated-rate-limit": optionalInteger(
    "unauthenticated-rate-limit",
    "N",
    `unauthenticated answers per second per source IP (default ${TurnServer.defaultUnauthenticatedRateLimit}; 0: unlimited)`
  ),
  "lifetime": optionalInteger("lifetime", "SECONDS", "allocation lifetime when the client asks for less (default 600)"),
  "max-lifetime": optionalInteger("max-lifetime", "SECONDS", "longest allocation lifetime granted (default 3600)"),
  "software": optionalText("software", "TEXT", "SOFTWARE attribute (default effect-ice; empty: none)"),
  "no-tcp": Options.boolean("no-tcp").pipe(Options.withDescription("do not listen on TCP")),
  "metrics-port": optionalInteger("metrics-port", "PORT", "serve Prometheus metrics over HTTP on this port (0: any)"),
  "config": optionalText("config", "FILE", "a turnserver.conf-style file (name=value per line); flags win over it")
}

/**
 * What the flags of `effect-ice turn-server` parse to.
 *
 * @since 0.1.0
 * @category commands
 */
export type TurnServerFlags = Command.Command.ParseConfig<typeof turnServerFlags>

/**
 * The settings the flags give (the `config` flag aside), each value checked as the configuration file's would be;
 * an invalid one fails with a `SettingsError` naming the flag.
 *
 * @since 0.1.0
 * @category commands
 */
export const settingsFromFlags = (
  flags: TurnServerFlags
): Either.Either<TurnServerConfig.Settings, TurnServerConfig.SettingsError> => {
  let settings = TurnServerConfig.empty
  for (const name of TurnServerConfig.settingNames) {
    const flag = (flags as Record<string, unknown>)[name]
    const values: Array<string | undefined> = Array.isArray(flag)
      ? flag.map(String)
      : Option.isOption(flag)
      ? Option.match(flag, { onNone: () => [], onSome: (v) => [String(v)] })
      : flag === true
      ? [undefined]
      : []
    for (const v of values) {
      const next = TurnServerConfig.applySetting(settings, name, v)
      if (Either.isLeft(next)) {
        return Either.left(new TurnServerConfig.SettingsError({ setting: `--${name}`, reason: next.left }))
      }
      settings = next.right
    }
  }
  return Either.right(settings)
}

/** Reads a text file, failing with an error whose message is short: `NotFound`, `PermissionDenied`, … */
const readText = (fs: FileSystem.FileSystem, path: string) =>
  Effect.mapError(
    fs.readFileString(path),
    (error) => new Error(error._tag === "SystemError" ? error.reason : error.message)
  )

const loopbackOf = (ip: string): string => ip === "0.0.0.0" ? "127.0.0.1" : ip === "::" ? "::1" : ip

/**
 * The `turn-server` command's work: settings from the flags over the `--config` file, the certificate and key read
 * from their files, a `TurnServer` (and with `--metrics-port` a `Prometheus` endpoint) running until interrupted,
 * one line printed per listener.
 *
 * @since 0.1.0
 * @category commands
 */
export const turnServer = (
  flags: TurnServerFlags
): Effect.Effect<
  void,
  TurnServerConfig.SettingsError | TurnServerConfig.ConfigFileError | NetworkError,
  Network | FileSystem.FileSystem
> =>
  Effect.scoped(Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    let settings = yield* settingsFromFlags(flags)
    if (Option.isSome(flags.config)) {
      const path = flags.config.value
      const text = yield* Effect.mapError(
        readText(fs, path),
        (error) =>
          new TurnServerConfig.SettingsError({ setting: "--config", reason: `cannot read ${path} (${error.message})` })
      )
      const file = yield* TurnServerConfig.parseConfigFile(text, path)
      settings = TurnServerConfig.merge(file, settings)
    }
    const options = yield* TurnServerConfig.toOptions(settings, (path) => readText(fs, path))
    const server = yield* TurnServer.make(options)
    for (const endpoint of [...server.udp, ...server.tcp, ...server.tls]) {
      yield* Console.log(`listening ${endpoint.transport} ${TransportAddress.format(endpoint)}`)
    }
    const relays = options.relayAddresses ?? [options.relayAddress ?? options.addresses[0]!]
    for (const relay of relays) yield* Console.log(`relay ${relay}`)
    if (settings.metricsPort !== undefined) {
      const listener = yield* Prometheus.serve({
        address: loopbackOf(options.addresses[0]!),
        port: settings.metricsPort
      })
      yield* Console.log(`metrics http://${TransportAddress.format(listener.local)}${Prometheus.defaultPath}`)
    }
    return yield* Effect.never
  }))

const turnServerCommand = Command.make("turn-server", turnServerFlags, turnServer).pipe(
  Command.withDescription("Run a TURN server (RFC 8656) until SIGINT or SIGTERM")
)

/**
 * The `effect-ice` command with its subcommands.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("effect-ice").pipe(
  Command.withDescription("NAT traversal tools: STUN client and server, NAT type discovery, TURN server"),
  Command.withSubcommands([stunCommand, stunServerCommand, natTypeCommand, turnServerCommand])
)

/**
 * Runs the command line on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category commands
 */
export const run = Command.run(command, { name: "effect-ice", version: "0.1.0" })
