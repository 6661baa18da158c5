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
 * - `effect-ice demo [--json] [--no-turn] [--real]`: the project's main program (`npm start`). It builds a simulated
 *   internet with a STUN and a TURN server and two peers behind every pair of the nine RFC 4787 mapping × filtering
 *   behaviours, runs ICE for all 81 pairings in virtual time (each in a world of its own, several at a time), and
 *   prints the 9 × 9 matrix (outcome, Alice's selected pair, virtual milliseconds to connected, checks sent), then
 *   the classical 4 × 4 view of the same runs marked against the table of ARCHITECTURE.md. `--json` prints
 *   `{ "cells": [...] }` (81 cells, row-major, A = rows). `--no-turn` leaves the TURN server out, so the pairings
 *   that need a relay fail. `--real` runs two agents and our TURN server on the loopback interface with real
 *   sockets instead. Exit code 0 when every pairing connected (with `--no-turn`: when every outcome is the
 *   expected one), 1 otherwise.
 *
 * The commands are plain Effects on the `Network` service; `bin.ts` runs them on `NodeNetwork` (the simulated
 * `demo` and `nat-type --simulate` bring their own virtual networks).
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import {
  Clock,
  Console,
  Data,
  Duration,
  Effect,
  Either,
  Fiber,
  Logger,
  LogLevel,
  Option,
  Random,
  Scheduler,
  Stream
} from "effect"
import type { Scope } from "effect"
import * as IceAgent from "./IceAgent.js"
import type * as IceGatherer from "./IceGatherer.js"
import * as Scenario from "./internal/iceScenario.js"
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

// -----------------------------------------------------------------------------------------------------------------
// demo
// -----------------------------------------------------------------------------------------------------------------

/**
 * A NAT behaviour as the demo names it: RFC 4787's mapping and filtering.
 *
 * @since 0.1.0
 * @category models
 */
export interface DemoBehaviour {
  readonly mapping: NatBehavior.Mapping
  readonly filtering: NatBehavior.Filtering
}

/**
 * How a pairing ended: a direct pair, a pair through the TURN server, or no pair at all.
 *
 * @since 0.1.0
 * @category models
 */
export type DemoOutcome = "direct" | "relay" | "failed"

/**
 * One pairing of the demo, as `effect-ice demo --json` prints it: Alice (controlling) behind a NAT of behaviour `a`,
 * Bob (controlled) behind `b`; Alice's selected pair as `<local type>-<remote type>` (`none` when it failed), her
 * virtual milliseconds from the start to connected (or to failure), and the checks both agents sent.
 *
 * @since 0.1.0
 * @category models
 */
export interface DemoCell {
  readonly a: DemoBehaviour
  readonly b: DemoBehaviour
  readonly outcome: DemoOutcome
  readonly pair: string
  readonly virtualMs: number
  readonly checks: number
}

/**
 * The nine mapping × filtering behaviours, mapping first (`EIM/EIF`, `EIM/ADF`, `EIM/APDF`, `ADM/EIF`, …): the order
 * of the demo's rows and columns.
 *
 * @since 0.1.0
 * @category constants
 */
export const demoBehaviours: ReadonlyArray<DemoBehaviour> = NatBehavior.behaviours.flatMap((mapping) =>
  NatBehavior.behaviours.map((filtering) => ({ mapping, filtering }))
)

/**
 * `EIM/APDF` for a behaviour.
 *
 * @since 0.1.0
 * @category getters
 */
export const behaviourName = (b: DemoBehaviour): string =>
  `${NatBehavior.abbreviation("mapping", b.mapping)}/${NatBehavior.abbreviation("filtering", b.filtering)}`

/**
 * Which of the 81 pairings have a direct path (D) and which need a relay (R), rows = A and columns = B in the order
 * of {@link demoBehaviours}. Written down, not computed: the reasoning, cell by cell, is in
 * `test/sim/ice-matrix.test.ts` (a side mapping endpoint-independently with EIF or ADF connects with anyone; two
 * EIM sides always connect; otherwise a direct path needs EIF on one side, no port filtering on the other and an
 * address-dependent mapping on at least one). Its classical cells are ARCHITECTURE.md's table.
 *
 * @since 0.1.0
 * @category constants
 */
export const expectedPaths: Readonly<Record<string, string>> = {
  // B:       EIM: EIF ADF APDF  ADM: EIF ADF APDF  APDM: EIF ADF APDF
  "EIM/EIF": "DDDDDDDDD",
  "EIM/ADF": "DDDDDDDDD",
  "EIM/APDF": "DDDRRRRRR",
  "ADM/EIF": "DDRDDRDDR",
  "ADM/ADF": "DDRDRRDRR",
  "ADM/APDF": "DDRRRRRRR",
  "APDM/EIF": "DDRDDRRRR",
  "APDM/ADF": "DDRDRRRRR",
  "APDM/APDF": "DDRRRRRRR"
}

/**
 * The classical NAT types and their RFC 4787 behaviours: full cone = EIM+EIF, restricted cone = EIM+ADF,
 * port-restricted cone = EIM+APDF, symmetric = APDM+APDF.
 *
 * @since 0.1.0
 * @category constants
 */
export const classicalTypes: ReadonlyArray<readonly [string, DemoBehaviour]> = [
  ["full cone", { mapping: "endpoint-independent", filtering: "endpoint-independent" }],
  ["restricted", { mapping: "endpoint-independent", filtering: "address-dependent" }],
  ["port-restricted", { mapping: "endpoint-independent", filtering: "address-and-port-dependent" }],
  ["symmetric", { mapping: "address-and-port-dependent", filtering: "address-and-port-dependent" }]
]

/**
 * ARCHITECTURE.md's table (what ICE must achieve between the classical NAT types): `direct`, or `relay` for "needs
 * a relay". Rows = A, columns = B, in the order of {@link classicalTypes}.
 *
 * @since 0.1.0
 * @category constants
 */
export const architectureTable: ReadonlyArray<ReadonlyArray<"direct" | "relay">> = [
  // B: full cone, restricted, port-restricted, symmetric
  ["direct", "direct", "direct", "direct"], // full cone
  ["direct", "direct", "direct", "direct"], // restricted
  ["direct", "direct", "direct", "relay"], // port-restricted
  ["direct", "direct", "relay", "relay"] // symmetric
]

/**
 * The outcome a pairing should have: `direct` where {@link expectedPaths} says so; otherwise `relay` with a TURN
 * server, `failed` without one.
 *
 * @since 0.1.0
 * @category getters
 */
export const expectedOutcome = (a: DemoBehaviour, b: DemoBehaviour, turn: boolean): DemoOutcome => {
  const path = expectedPaths[behaviourName(a)]![demoBehaviours.findIndex((x) => sameBehaviour(x, b))]
  return path === "D" ? "direct" : turn ? "relay" : "failed"
}

const sameBehaviour = (x: DemoBehaviour, y: DemoBehaviour) => x.mapping === y.mapping && x.filtering === y.filtering

/**
 * What {@link runDemo} found.
 *
 * @since 0.1.0
 * @category models
 */
export interface DemoResult {
  /** The 81 pairings, row-major (A = rows), in the order of {@link demoBehaviours}. */
  readonly cells: ReadonlyArray<DemoCell>
  /** Whether the world had a TURN server. */
  readonly turn: boolean
  /** Real (wall-clock) milliseconds the 81 runs took, by the caller's `Clock`. */
  readonly realMs: number
  /** How many pairings ran at once. */
  readonly concurrency: number
}

/**
 * How many pairings {@link runDemo} runs at once by default. Each pairing is a world of its own with its own virtual
 * clock, and a virtual clock spends part of each step waiting on the event loop (`TestClock` yields with
 * `setTimeout(0)` before it wakes each sleeper), so running several at once fills those waits with work. Measured on
 * 2 cores: one at a time about 0.5 s per pairing, 4 at once 19 s for the 81, 8 at once 12 s, 16 at once 10 s; more
 * than 16 gains nothing and takes more memory (the rest is CPU: the engines' fibers and garbage collection).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDemoConcurrency = 16

/**
 * The scheduler of the demo's fibers: Effect's default one, except that a fiber that has run its share of operations
 * yields to the event loop with `setImmediate` instead of `setTimeout(0)`. A timer waits at least 1 ms, during which
 * every world stands still; profiled on the 81 pairings, the process was idle for about a quarter of the run with the
 * default and for under a tenth with this one, with the same results (each world's order of events follows its own
 * virtual clock).
 */
const demoScheduler = Scheduler.makeBatched((runBatch) => setImmediate(runBatch))

/**
 * Runs the 81 pairings (`iceScenario.runPairing`: a STUN server, with `turn` a TURN server, Alice behind NAT A and
 * Bob behind NAT B, each pairing in a fresh seeded world in virtual time) and returns them row-major.
 *
 * @since 0.1.0
 * @category commands
 */
export const runDemo = (options: {
  readonly turn: boolean
  readonly concurrency?: number | undefined
}): Effect.Effect<DemoResult> =>
  Effect.gen(function*() {
    const concurrency = options.concurrency ?? defaultDemoConcurrency
    const pairings = demoBehaviours.flatMap((a) => demoBehaviours.map((b) => [a, b] as const))
    const start = yield* Clock.currentTimeMillis
    const cells = yield* Effect.forEach(pairings, ([a, b]) =>
      Effect.map(
        Scenario.runPairing({
          a: { nat: Scenario.behaviour(a.mapping, a.filtering) },
          b: { nat: Scenario.behaviour(b.mapping, b.filtering) },
          turn: options.turn
        }),
        (r): DemoCell => ({ a, b, outcome: r.outcome, pair: r.pair, virtualMs: r.virtualMs, checks: r.checks })
      ), { concurrency }).pipe(Effect.withScheduler(demoScheduler))
    const end = yield* Clock.currentTimeMillis
    return { cells, turn: options.turn, realMs: end - start, concurrency }
  })

const candidateLetter: Record<string, string> = { host: "h", srflx: "s", prflx: "p", relay: "r" }

/** `sp` for `srflx-prflx`; `--` for `none`. */
const shortPair = (pair: string) =>
  pair === "none" ? "--" : pair.split("-").map((type) => candidateLetter[type] ?? type).join("")

const outcomeLetter: Record<DemoOutcome, string> = { direct: "D", relay: "R", failed: "F" }

const lookupCell = (cells: ReadonlyArray<DemoCell>, a: DemoBehaviour, b: DemoBehaviour): DemoCell | undefined =>
  cells.find((c) => sameBehaviour(c.a, a) && sameBehaviour(c.b, b))

/** Lays out rows of cells: the first column left-aligned, the others padded to their widest entry. */
const layout = (rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> => {
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((row) => row[j]!.length)))
  return rows.map((row) => row.map((text, j) => j === row.length - 1 ? text : text.padEnd(widths[j]!)).join("  "))
}

/**
 * The demo as text: the 9 × 9 matrix (each cell `D ss 1170 9`: outcome, Alice's pair, virtual ms, checks; `!` after
 * a cell whose outcome is not the expected one), a legend, a summary line, and the classical 4 × 4 view of the same
 * runs marked against ARCHITECTURE.md's table.
 *
 * @since 0.1.0
 * @category commands
 */
export const formatDemo = (result: DemoResult): string => {
  const { cells, turn } = result
  const msWidth = Math.max(...cells.map((c) => String(c.virtualMs).length))
  const checksWidth = Math.max(...cells.map((c) => String(c.checks).length))
  const pairWidth = Math.max(...cells.map((c) => shortPair(c.pair).length))
  const cellText = (c: DemoCell) =>
    `${outcomeLetter[c.outcome]} ${shortPair(c.pair).padEnd(pairWidth)} ${String(c.virtualMs).padStart(msWidth)} ${
      String(c.checks).padStart(checksWidth)
    }`
  const mark = (c: DemoCell | undefined) => c !== undefined && c.outcome === expectedOutcome(c.a, c.b, turn) ? " " : "!"
  const names = demoBehaviours.map(behaviourName)
  const cellWidth = Math.max(...names.map((n) => n.length), ...cells.map((c) => cellText(c).length))
  const labelWidth = Math.max(...names.map((n) => n.length), 5) + 1
  const matrix = [
    "A \\ B".padEnd(labelWidth) + names.map((n) => n.padEnd(cellWidth + 1)).join("").trimEnd(),
    ...demoBehaviours.map((a) =>
      behaviourName(a).padEnd(labelWidth) + demoBehaviours.map((b) => {
        const c = lookupCell(cells, a, b)
        return (c === undefined ? "?" : cellText(c)).padEnd(cellWidth) + mark(c)
      }).join("").trimEnd()
    )
  ]
  const count = (o: DemoOutcome) => cells.filter((c) => c.outcome === o).length
  const unexpected = cells.filter((c) => c.outcome !== expectedOutcome(c.a, c.b, turn)).length
  const agrees = (c: DemoCell | undefined, table: "direct" | "relay") =>
    c !== undefined && c.outcome === (table === "direct" ? "direct" : turn ? "relay" : "failed")
  let agreeing = 0
  const classical = layout([
    ["A \\ B", ...classicalTypes.map(([name]) => name)],
    ...classicalTypes.map(([nameA, a], i) => [
      nameA,
      ...classicalTypes.map(([, b], j) => {
        const c = lookupCell(cells, a, b)
        const table = architectureTable[i]![j]!
        if (agrees(c, table)) agreeing++
        const shown = c === undefined ? "?" : c.outcome === "failed" ? "failed" : `${c.outcome} ${c.pair}`
        return `${shown} ${agrees(c, table) ? "ok" : `DIFFERS (table: ${table})`}`
      })
    ])
  ])
  return [
    `ICE between two peers behind every pair of RFC 4787 NAT behaviours: ${cells.length} pairings on a simulated internet`,
    `(STUN 192.0.2.1:3478${
      turn ? ", TURN 198.51.100.9:3478 over UDP" : ", no TURN server"
    }, 10 ms one way). Rows: Alice's NAT (controlling), columns: Bob's.`,
    "",
    ...matrix,
    "",
    "Each cell: outcome (D direct, R relay through TURN, F failed); Alice's selected pair, local and remote candidate",
    "type (h host, s srflx, p prflx, r relay); virtual ms until Alice connected; checks sent by both agents; ! after a",
    "cell: not the expected outcome. EIM/ADM/APDM: endpoint-independent, address-dependent, address-and-port-dependent",
    "mapping; EIF/ADF/APDF: the same for filtering.",
    "",
    `${cells.length} pairings: ${count("direct")} direct, ${count("relay")} relay, ${count("failed")} failed` +
    `${unexpected === 0 ? ", all as expected" : `, ${unexpected} not as expected`}; ` +
    `${(result.realMs / 1000).toFixed(1)} s real time (${result.concurrency} worlds at a time, in virtual time)`,
    "",
    `The classical NAT types (the same runs), against the table in ARCHITECTURE.md (${
      turn ? "relay: connected through TURN" : "relay: needs a relay, so fails without TURN"
    }):`,
    "",
    ...classical,
    "",
    `${agreeing} of ${classicalTypes.length ** 2} cells agree with ARCHITECTURE.md`
  ].join("\n")
}

/**
 * The demo did not end as it should: some pairing failed (with TURN), or an outcome was not the expected one
 * (without TURN), or the loopback run did not connect.
 *
 * @since 0.1.0
 * @category errors
 */
export class DemoFailed extends Data.TaggedError("DemoFailed")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/**
 * What `effect-ice demo --real` found on the loopback interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface RealDemoResult {
  readonly outcome: "direct" | "relay"
  /** Alice's selected pair, `<local type>-<remote type>`. */
  readonly pair: string
  /** Real milliseconds from Alice's start to connected. */
  readonly realMs: number
  /** Checks sent by both agents. */
  readonly checks: number
  /** The TURN server's UDP address (none with `turn: false`). */
  readonly turnServer: string | null
  /** What each side received: Bob first, then Alice. */
  readonly received: readonly [string, string]
}

const randomToken = (length: number): Effect.Effect<string> =>
  Effect.map(
    Effect.all(Array.from({ length }, () => Random.nextIntBetween(0, 36))),
    (digits) => digits.map((d) => d.toString(36)).join("")
  )

/**
 * Two ICE agents and (with `turn`) our TURN server on the IPv4 loopback interface, with real sockets (the `Network`
 * service): the server on 127.0.0.1, port 0, with a generated user and loopback peers allowed; each agent with
 * host candidates on loopback and the server; signalling piped in process. They connect and send one message each
 * way; closing the scope releases everything (the allocations, the agents, the server).
 *
 * @since 0.1.0
 * @category commands
 */
export const runRealDemo = (options: {
  readonly turn: boolean
  readonly timeout?: Duration.DurationInput | undefined
}): Effect.Effect<RealDemoResult, DemoFailed | NetworkError, Network> =>
  Effect.scoped(Effect.gen(function*() {
    const username = `demo-${yield* randomToken(8)}`
    const password = yield* randomToken(24)
    let turnServers: ReadonlyArray<IceGatherer.TurnServerConfig> = []
    let turnServer: string | null = null
    if (options.turn) {
      const server = yield* TurnServer.make({
        addresses: ["127.0.0.1"],
        port: 0,
        tcp: false,
        users: { [username]: password },
        allowPeers: ["127.0.0.0/8"]
      })
      const address = server.udp[0]!
      turnServer = TransportAddress.format(address)
      turnServers = [{
        server: { family: address.family, ip: address.ip, port: address.port },
        transport: "udp",
        auth: { mode: "static", username, password }
      }]
    }
    const agentOptions: IceAgent.Options = {
      includeLoopback: true,
      interfaceFilter: (i) => i.internal && i.family === "IPv4",
      families: ["IPv4"],
      turnServers
    }
    const timeout = options.timeout ?? "10 seconds"
    const failed = (what: string) => () => new DemoFailed({ reason: `real loopback: ${what}` })
    const [alice, bob] = yield* Effect.all([
      IceAgent.make({ ...agentOptions, role: "controlling" }),
      IceAgent.make({ ...agentOptions, role: "controlled" })
    ]).pipe(Effect.mapError((e) => new DemoFailed({ reason: `real loopback: ${e.message}` })))
    yield* IceAgent.pipeSignalling(alice, bob)
    const [pair] = yield* Effect.all([alice.connected, bob.connected], { concurrency: 2 }).pipe(
      Effect.mapError((e) => new DemoFailed({ reason: `real loopback: ${e.message}` })),
      Effect.timeoutFail({ duration: timeout, onTimeout: failed(`not connected within ${Duration.format(timeout)}`) })
    )
    const receiveOne = (agent: IceAgent.IceAgent) =>
      Effect.fork(
        Effect.map(Stream.runHead(agent.data), (o) => Option.map(o, (bytes) => new TextDecoder().decode(bytes)))
      )
    const toBob = yield* receiveOne(bob)
    const toAlice = yield* receiveOne(alice)
    const send = (agent: IceAgent.IceAgent, text: string) =>
      Effect.mapError(
        agent.send(new TextEncoder().encode(text)),
        (e) => new DemoFailed({ reason: `real loopback: send failed: ${e.message}` })
      )
    yield* send(alice, "hello bob")
    yield* send(bob, "hello alice")
    const received = yield* Effect.all([toBob, toAlice].map((fiber) =>
      Fiber.join(fiber).pipe(
        Effect.flatMap(
          Option.match({ onNone: () => Effect.fail(failed("a data stream ended")()), onSome: Effect.succeed })
        ),
        Effect.timeoutFail({ duration: timeout, onTimeout: failed("a message was not received") })
      )
    ))
    const statsA = yield* alice.stats
    const statsB = yield* bob.stats
    const relayed = pair.local.type === "relay" || pair.remote.type === "relay"
    return {
      outcome: relayed ? "relay" : "direct",
      pair: Scenario.pairKind(pair),
      realMs: statsA.connectedAfterMs ?? 0,
      checks: statsA.checksSent + statsB.checksSent,
      turnServer,
      received: [received[0]!, received[1]!]
    } as const
  }))

/**
 * `real loopback: direct host-host 12 ms, 6 checks (TURN 127.0.0.1:40000); bob got "hello bob", alice got "hello
 * alice"`.
 *
 * @since 0.1.0
 * @category commands
 */
export const formatRealDemo = (r: RealDemoResult): string =>
  `real loopback: ${r.outcome} ${r.pair} ${r.realMs} ms, ${r.checks} checks (${
    r.turnServer === null ? "no TURN server" : `TURN ${r.turnServer}`
  }); bob got ${JSON.stringify(r.received[0])}, alice got ${JSON.stringify(r.received[1])}`

/**
 * The `demo` command's work: the 81 simulated pairings printed as a matrix (or `{ "cells": [...] }` with `json`), or
 * with `real` the loopback run. Fails with `DemoFailed` (exit code 1) when a pairing failed with TURN, when an
 * outcome was not the expected one without TURN, or when the loopback run did not connect.
 *
 * @since 0.1.0
 * @category commands
 */
export const demo = (options: {
  readonly json: boolean
  readonly real: boolean
  readonly noTurn: boolean
}): Effect.Effect<void, DemoFailed | NetworkError, Network> =>
  Effect.gen(function*() {
    const turn = !options.noTurn
    if (options.real) {
      const result = yield* runRealDemo({ turn })
      const { received: _, ...shown } = result
      yield* Console.log(options.json ? JSON.stringify({ real: shown }) : formatRealDemo(result))
      return
    }
    if (!options.json) {
      yield* Console.log(`running ${demoBehaviours.length ** 2} ICE pairings in virtual time…`)
    }
    // The agents log each failure (`ICE failed …`) as a warning; the matrix says it all.
    const result = yield* runDemo({ turn }).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
    yield* Console.log(options.json ? JSON.stringify({ cells: result.cells }) : formatDemo(result))
    if (turn) {
      const failed = result.cells.filter((c) => c.outcome === "failed")
      if (failed.length > 0) {
        return yield* Effect.fail(
          new DemoFailed({
            reason: `${failed.length} of ${result.cells.length} pairings failed with a TURN server: ${
              failed.map((c) => `${behaviourName(c.a)} × ${behaviourName(c.b)}`).join(", ")
            }`
          })
        )
      }
    } else {
      const unexpected = result.cells.filter((c) => c.outcome !== expectedOutcome(c.a, c.b, false))
      if (unexpected.length > 0) {
        return yield* Effect.fail(
          new DemoFailed({
            reason: `${unexpected.length} of ${result.cells.length} pairings were not as expected without TURN: ${
              unexpected.map((c) => `${behaviourName(c.a)} × ${behaviourName(c.b)} ${c.outcome}`).join(", ")
            }`
          })
        )
      }
    }
  })

const demoCommand = Command.make(
  "demo",
  {
    json: Options.boolean("json").pipe(
      Options.withDescription("print one JSON object { \"cells\": [...] } (81 cells, row-major, A = rows)")
    ),
    real: Options.boolean("real").pipe(
      Options.withDescription("run two agents and our TURN server on the loopback interface with real sockets")
    ),
    noTurn: Options.boolean("no-turn").pipe(
      Options.withDescription("no TURN server (STUN only): the pairings that need a relay fail")
    )
  },
  demo
).pipe(
  Command.withDescription(
    "ICE across all 81 pairs of RFC 4787 NAT behaviours on a simulated internet, in virtual time (--real: loopback)"
  )
)

/**
 * The `effect-ice` command with its subcommands.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("effect-ice").pipe(
  Command.withDescription(
    "NAT traversal tools: STUN client and server, NAT type discovery, TURN server, an ICE demo across simulated NATs"
  ),
  Command.withSubcommands([stunCommand, stunServerCommand, natTypeCommand, turnServerCommand, demoCommand])
)

/**
 * Runs the command line on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category commands
 */
export const run = Command.run(command, { name: "effect-ice", version: "0.1.0" })
