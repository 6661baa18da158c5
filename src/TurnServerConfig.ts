/**
 * How a TURN server is configured from outside the program: command-line flags (`effect-ice turn-server`), a
 * configuration file in the style of coturn's `turnserver.conf`, and environment variables (Effect `Config`). All
 * three speak one vocabulary, the {@link Settings} record, whose names are the CLI flags without `--`:
 *
 * | setting | value | `TurnServer.Options` | environment (`config`) |
 * | --- | --- | --- | --- |
 * | `listen` | `IP:PORT` or `IP` (port 3478), repeatable | `addresses`, `port` (UDP and TCP) | `TURN_LISTEN` |
 * | `tls-listen` | `IP:PORT` or `IP` (port 5349), repeatable | `tls.addresses`, `tls.port` | `TURN_TLS_LISTEN` |
 * | `cert`, `key` | PEM file paths | `tls.certificate`, `tls.key` | `TURN_TLS_CERT_PEM`, `TURN_TLS_KEY_PEM` (PEM text) |
 * | `realm` | text | `realm` | `TURN_REALM` |
 * | `user` | `NAME:PASSWORD`, repeatable | `users` | `TURN_USERS` (redacted) |
 * | `auth-secret` | TURN REST shared secret, repeatable | `restSecrets` | `TURN_AUTH_SECRETS` (redacted) |
 * | `relay-ip` | IP, repeatable (one per family) | `relayAddresses` | `TURN_RELAY_IPS` |
 * | `relay-ports` | `LO-HI` | `relayPortRange` | `TURN_RELAY_PORTS` |
 * | `external-ip` | IP, repeatable (one per family) | `externalAddresses` | `TURN_EXTERNAL_IPS` |
 * | `allow-peer`, `deny-peer` | CIDR, repeatable | `allowPeers`, `denyPeers` | `TURN_ALLOW_PEERS`, `TURN_DENY_PEERS` |
 * | `max-allocations` | count | `totalQuota` | `TURN_MAX_ALLOCATIONS` |
 * | `user-quota` | count | `userQuota` | `TURN_USER_QUOTA` |
 * | `max-bps` | bytes per second per allocation (0: unlimited) | `maxBytesPerSecond` | `TURN_MAX_BPS` |
 * | `unauthenticated-rate-limit` | answers per second per IP | `unauthenticatedRateLimit` | `TURN_UNAUTHENTICATED_RATE_LIMIT` |
 * | `lifetime` | seconds | `defaultLifetime` | `TURN_LIFETIME` |
 * | `max-lifetime` | seconds | `maxLifetime` | `TURN_MAX_LIFETIME` |
 * | `software` | text (empty: none) | `software` | `TURN_SOFTWARE` |
 * | `no-tcp` | flag | `tcp: false` | `TURN_NO_TCP` (`true`/`false`) |
 * | `metrics-port` | port | (not a server option: the CLI's Prometheus endpoint) | `TURN_METRICS_PORT` |
 *
 * In the environment, repeatable settings are comma-separated (`TURN_USERS=alice:secret,bob:hunter2`).
 *
 * Defaults and rules, applied by {@link resolve} whatever the source:
 * - With no `listen`, the server listens on `127.0.0.1:3478`: safe by default (nothing is exposed until the operator
 *   names an address). All `listen` addresses share one port, as do all `tls-listen` addresses (a `TurnServer`
 *   listens on one port per protocol); port 0 lets the system choose.
 * - A relayed socket needs a specific IP: when a `listen` address is a wildcard (`0.0.0.0`, `::`), `relay-ip` is
 *   required; otherwise the relay defaults to the first `listen` address.
 * - `cert` and `key` go together; with them and no `tls-listen`, TLS listens on the `listen` addresses, port 5349;
 *   `tls-listen` without them is an error.
 * - At least one `user` or `auth-secret` is required (a TURN server with no credentials would refuse everyone).
 *
 * The configuration file ({@link parseConfigFile}) has one `name=value` (or bare `name` for a flag) per line;
 * blank lines and lines starting with `#` are ignored; spaces around the name and the value are trimmed, and a
 * value in double quotes is taken without them. A repeatable name may appear on many lines and accumulates; a
 * single-valued name given twice keeps the last. Unknown names and bad values are errors that say the line number.
 * Paths in the file (`cert`, `key`) are taken as they are, that is relative to the working directory.
 *
 * Flags win over the file ({@link merge}): a flag given on the command line replaces the file's setting of the same
 * name; for a repeatable setting, the flags' list replaces the file's list (it is not appended to it).
 *
 * @since 0.1.0
 */
import { Config, ConfigError, Data, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import type { Types } from "effect"
import type * as Network from "./Network.js"
import * as TransportAddress from "./TransportAddress.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TurnServer from "./TurnServer.js"

/**
 * A static user: name and password.
 *
 * @since 0.1.0
 * @category models
 */
export interface User {
  readonly name: string
  readonly password: Redacted.Redacted<string>
}

/**
 * Everything a TURN server can be configured with from outside, validated value by value (the rules between values
 * are checked by {@link resolve}). Lists are empty and single values `undefined` when not given.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly listen: ReadonlyArray<SocketAddress>
  readonly tlsListen: ReadonlyArray<SocketAddress>
  /** Path of the certificate chain (PEM). */
  readonly cert: string | undefined
  /** Path of the private key (PEM). */
  readonly key: string | undefined
  readonly realm: string | undefined
  readonly users: ReadonlyArray<User>
  readonly authSecrets: ReadonlyArray<Redacted.Redacted<string>>
  readonly relayIps: ReadonlyArray<string>
  readonly relayPorts: readonly [number, number] | undefined
  readonly externalIps: ReadonlyArray<string>
  readonly allowPeers: ReadonlyArray<string>
  readonly denyPeers: ReadonlyArray<string>
  readonly maxAllocations: number | undefined
  readonly userQuota: number | undefined
  readonly maxBps: number | undefined
  readonly unauthenticatedRateLimit: number | undefined
  /** Seconds. */
  readonly lifetime: number | undefined
  /** Seconds. */
  readonly maxLifetime: number | undefined
  readonly software: string | undefined
  readonly noTcp: boolean | undefined
  readonly metricsPort: number | undefined
}

/**
 * No setting given.
 *
 * @since 0.1.0
 * @category constructors
 */
export const empty: Settings = {
  listen: [],
  tlsListen: [],
  cert: undefined,
  key: undefined,
  realm: undefined,
  users: [],
  authSecrets: [],
  relayIps: [],
  relayPorts: undefined,
  externalIps: [],
  allowPeers: [],
  denyPeers: [],
  maxAllocations: undefined,
  userQuota: undefined,
  maxBps: undefined,
  unauthenticatedRateLimit: undefined,
  lifetime: undefined,
  maxLifetime: undefined,
  software: undefined,
  noTcp: undefined,
  metricsPort: undefined
}

/**
 * Where the server listens when no `listen` is given: loopback only, on the TURN port (RFC 8656 §3.1).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultListen = "127.0.0.1:3478"

// ---------------------------------------------------------------------------------------------------------------
// The vocabulary
// ---------------------------------------------------------------------------------------------------------------

type Parse<A> = (value: string) => Either.Either<A, string>

const address = (defaultPort: number): Parse<SocketAddress> => (value) => {
  const bare = TransportAddress.canonicalIp(
    value.startsWith("[") && value.endsWith("]") ? value.slice(1, -1) : value
  )
  if (Option.isSome(bare)) return Either.right({ ...bare.value, port: defaultPort })
  return Either.mapLeft(TransportAddress.parse(value), () => `expected IP:PORT, [IPv6]:PORT or IP, got "${value}"`)
}

const ip: Parse<string> = (value) =>
  Option.match(TransportAddress.canonicalIp(value), {
    onNone: () => Either.left(`expected an IP address, got "${value}"`),
    onSome: (canonical) => Either.right(canonical.ip)
  })

const cidr: Parse<string> = (value) =>
  Option.isSome(TurnServer.parseCidr(value))
    ? Either.right(value)
    : Either.left(`expected an address range such as 192.0.2.0/24 or 2001:db8::/32, got "${value}"`)

const count: Parse<number> = (value) =>
  /^[0-9]{1,15}$/.test(value) ? Either.right(Number(value)) : Either.left(`expected a whole number, got "${value}"`)

const positive: Parse<number> = (value) =>
  Either.flatMap(count(value), (n) => n > 0 ? Either.right(n) : Either.left(`expected more than 0, got ${n}`))

const port: Parse<number> = (value) =>
  Either.flatMap(count(value), (n) => n <= 65535 ? Either.right(n) : Either.left(`expected a port (0-65535), got ${n}`))

const portRange: Parse<readonly [number, number]> = (value) => {
  const match = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(value)
  const lo = match === null ? NaN : Number(match[1])
  const hi = match === null ? NaN : Number(match[2])
  return lo >= 1 && hi <= 65535 && lo <= hi
    ? Either.right([lo, hi] as const)
    : Either.left(`expected LO-HI with 1 <= LO <= HI <= 65535, got "${value}"`)
}

const text: Parse<string> = (value) => Either.right(value)

const nonEmpty: Parse<string> = (value) => value.length > 0 ? Either.right(value) : Either.left("expected a value")

const user: Parse<User> = (value) => {
  const colon = value.indexOf(":")
  return colon <= 0
    ? Either.left("expected NAME:PASSWORD")
    : Either.right({ name: value.slice(0, colon), password: Redacted.make(value.slice(colon + 1)) })
}

const secret: Parse<Redacted.Redacted<string>> = (value) =>
  value.length > 0 ? Either.right(Redacted.make(value)) : Either.left("expected a secret")

const bool: Parse<boolean> = (value) =>
  value === "true" || value === "yes" || value === "1"
    ? Either.right(true)
    : value === "false" || value === "no" || value === "0"
    ? Either.right(false)
    : Either.left(`expected true or false, got "${value}"`)

interface Definition {
  readonly field: keyof Settings
  readonly kind: "list" | "value" | "flag"
  readonly parse: Parse<unknown>
  readonly env: string
}

const list = (field: keyof Settings, parse: Parse<unknown>, env: string): Definition => ({
  field,
  kind: "list",
  parse,
  env
})
const value = (field: keyof Settings, parse: Parse<unknown>, env: string): Definition => ({
  field,
  kind: "value",
  parse,
  env
})

const definitions: Readonly<Record<string, Definition>> = {
  "listen": list("listen", address(TurnServer.defaultPort), "TURN_LISTEN"),
  "tls-listen": list("tlsListen", address(TurnServer.defaultTlsPort), "TURN_TLS_LISTEN"),
  "cert": value("cert", nonEmpty, "TURN_TLS_CERT_PEM"),
  "key": value("key", nonEmpty, "TURN_TLS_KEY_PEM"),
  "realm": value("realm", nonEmpty, "TURN_REALM"),
  "user": list("users", user, "TURN_USERS"),
  "auth-secret": list("authSecrets", secret, "TURN_AUTH_SECRETS"),
  "relay-ip": list("relayIps", ip, "TURN_RELAY_IPS"),
  "relay-ports": value("relayPorts", portRange, "TURN_RELAY_PORTS"),
  "external-ip": list("externalIps", ip, "TURN_EXTERNAL_IPS"),
  "allow-peer": list("allowPeers", cidr, "TURN_ALLOW_PEERS"),
  "deny-peer": list("denyPeers", cidr, "TURN_DENY_PEERS"),
  "max-allocations": value("maxAllocations", count, "TURN_MAX_ALLOCATIONS"),
  "user-quota": value("userQuota", count, "TURN_USER_QUOTA"),
  "max-bps": value("maxBps", count, "TURN_MAX_BPS"),
  "unauthenticated-rate-limit": value("unauthenticatedRateLimit", count, "TURN_UNAUTHENTICATED_RATE_LIMIT"),
  "lifetime": value("lifetime", positive, "TURN_LIFETIME"),
  "max-lifetime": value("maxLifetime", positive, "TURN_MAX_LIFETIME"),
  "software": value("software", text, "TURN_SOFTWARE"),
  "no-tcp": { field: "noTcp", kind: "flag", parse: bool, env: "TURN_NO_TCP" },
  "metrics-port": value("metricsPort", port, "TURN_METRICS_PORT")
}

/**
 * The setting names (the CLI flags without `--`, the names of the configuration file), in documentation order.
 *
 * @since 0.1.0
 * @category models
 */
export const settingNames: ReadonlyArray<string> = Object.keys(definitions)

/**
 * Adds one setting to `settings`: a repeatable name appends, a single-valued one replaces; a flag's value may be
 * `undefined` (given bare, meaning true) or `true`/`false`. `Left` says what is wrong with the value (or that the
 * name is unknown).
 *
 * @since 0.1.0
 * @category combinators
 */
export const applySetting = (
  settings: Settings,
  name: string,
  raw: string | undefined
): Either.Either<Settings, string> => {
  const definition = Object.hasOwn(definitions, name) ? definitions[name] : undefined
  if (definition === undefined) return Either.left(`unknown setting "${name}"`)
  if (raw === undefined && definition.kind !== "flag") return Either.left(`${name} needs a value (${name}=...)`)
  return Either.map(raw === undefined ? Either.right(true) : definition.parse(raw), (parsed) => ({
    ...settings,
    [definition.field]: definition.kind === "list"
      ? [...(settings[definition.field] as ReadonlyArray<unknown>), parsed]
      : parsed
  }))
}

/**
 * `flags` over `file`: each setting given in `flags` (a non-empty list, a defined value) replaces the file's.
 *
 * @since 0.1.0
 * @category combinators
 */
export const merge = (file: Settings, flags: Settings): Settings => {
  const out: Record<string, unknown> = { ...file }
  for (const [field, v] of Object.entries(flags)) {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) continue
    out[field] = v
  }
  return out as unknown as Settings
}

// ---------------------------------------------------------------------------------------------------------------
// The configuration file
// ---------------------------------------------------------------------------------------------------------------

/**
 * A line of a configuration file that cannot be used.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigFileError extends Data.TaggedError("ConfigFileError")<{
  /** 1-based. */
  readonly line: number
  readonly reason: string
  /** The file's path, when known. */
  readonly path?: string | undefined
}> {
  override get message(): string {
    return `${this.path ?? "config"}:${this.line}: ${this.reason}`
  }
}

/**
 * Parses a configuration file in the style of coturn's `turnserver.conf` (see the module doc).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseConfigFile = (text: string, path?: string): Either.Either<Settings, ConfigFileError> => {
  let settings = empty
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === "" || line.startsWith("#")) continue
    const eq = line.indexOf("=")
    const name = (eq < 0 ? line : line.slice(0, eq)).trim().replace(/^--/, "")
    let raw = eq < 0 ? undefined : line.slice(eq + 1).trim()
    if (raw !== undefined && raw.length >= 2 && raw.startsWith("\"") && raw.endsWith("\"")) raw = raw.slice(1, -1)
    const next = applySetting(settings, name, raw)
    if (Either.isLeft(next)) return Either.left(new ConfigFileError({ line: i + 1, reason: next.left, path }))
    settings = next.right
  }
  return Either.right(settings)
}

// ---------------------------------------------------------------------------------------------------------------
// Settings to server options
// ---------------------------------------------------------------------------------------------------------------

/**
 * Settings that cannot be used together, or a file they name that cannot be read: which setting, and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class SettingsError extends Data.TaggedError("SettingsError")<{
  readonly setting: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.setting}: ${this.reason}`
  }
}

const isWildcard = (ip: string): boolean => ip === "0.0.0.0" || ip === "::"

const onePort = (setting: string, addresses: ReadonlyArray<SocketAddress>): Either.Either<number, SettingsError> => {
  const ports = new Set(addresses.map((a) => a.port))
  return ports.size <= 1
    ? Either.right(addresses[0]?.port ?? 0)
    : Either.left(new SettingsError({ setting, reason: "every address must use the same port" }))
}

/**
 * The server options the settings stand for (see the module doc for the defaults and rules), given the PEM text of
 * the certificate and key when the settings name them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (
  settings: Settings,
  pem?: { readonly certificate: string; readonly key: string }
): Either.Either<TurnServer.Options, SettingsError> =>
  Either.gen(function*() {
    const listen = settings.listen.length > 0 ? settings.listen : [
      Either.getOrThrow(address(TurnServer.defaultPort)(defaultListen))
    ]
    const port = yield* onePort("listen", listen)
    const tlsPort = yield* onePort("tls-listen", settings.tlsListen)
    if (settings.relayIps.length === 0 && listen.some((a) => isWildcard(a.ip))) {
      return yield* Either.left(
        new SettingsError({
          setting: "relay-ip",
          reason: `listening on ${listen.find((a) => isWildcard(a.ip))!.ip} needs relay-ip (the specific IP relayed ` +
            "sockets are bound on)"
        })
      )
    }
    if ((settings.cert === undefined) !== (settings.key === undefined)) {
      return yield* Either.left(new SettingsError({ setting: "cert", reason: "cert and key go together" }))
    }
    if (settings.tlsListen.length > 0 && settings.cert === undefined) {
      return yield* Either.left(new SettingsError({ setting: "tls-listen", reason: "needs cert and key" }))
    }
    if (settings.cert !== undefined && pem === undefined) {
      return yield* Either.left(new SettingsError({ setting: "cert", reason: "the certificate was not read" }))
    }
    if (settings.users.length === 0 && settings.authSecrets.length === 0) {
      return yield* Either.left(
        new SettingsError({ setting: "user", reason: "give at least one user (NAME:PASSWORD) or auth-secret" })
      )
    }
    const users: Record<string, string> = {}
    for (const u of settings.users) users[u.name] = Redacted.value(u.password)
    const options: Types.Mutable<TurnServer.Options> = {
      addresses: listen.map((a) => a.ip),
      port,
      tcp: settings.noTcp !== true,
      users
    }
    if (settings.cert !== undefined && pem !== undefined) {
      options.tls = settings.tlsListen.length > 0
        ? { certificate: pem.certificate, key: pem.key, addresses: settings.tlsListen.map((a) => a.ip), port: tlsPort }
        : { certificate: pem.certificate, key: pem.key }
    }
    if (settings.realm !== undefined) options.realm = settings.realm
    if (settings.authSecrets.length > 0) options.restSecrets = settings.authSecrets.map(Redacted.value)
    if (settings.relayIps.length > 0) options.relayAddresses = settings.relayIps
    if (settings.relayPorts !== undefined) options.relayPortRange = settings.relayPorts
    if (settings.externalIps.length > 0) options.externalAddresses = settings.externalIps
    if (settings.allowPeers.length > 0) options.allowPeers = settings.allowPeers
    if (settings.denyPeers.length > 0) options.denyPeers = settings.denyPeers
    if (settings.maxAllocations !== undefined) options.totalQuota = settings.maxAllocations
    if (settings.userQuota !== undefined) options.userQuota = settings.userQuota
    if (settings.maxBps !== undefined) options.maxBytesPerSecond = settings.maxBps
    if (settings.unauthenticatedRateLimit !== undefined) {
      options.unauthenticatedRateLimit = settings.unauthenticatedRateLimit
    }
    if (settings.lifetime !== undefined) options.defaultLifetime = Duration.seconds(settings.lifetime)
    if (settings.maxLifetime !== undefined) options.maxLifetime = Duration.seconds(settings.maxLifetime)
    if (settings.software !== undefined) options.software = settings.software
    return options
  })

/**
 * {@link resolve}, reading the certificate and key files the settings name with `readFile` (for example
 * `FileSystem.readFileString`); a file that cannot be read fails with `SettingsError` for `cert` or `key`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toOptions = <E, R>(
  settings: Settings,
  readFile: (path: string) => Effect.Effect<string, E, R>
): Effect.Effect<TurnServer.Options, SettingsError, R> =>
  Effect.gen(function*() {
    const read = (setting: string, path: string) =>
      Effect.mapError(readFile(path), (error) =>
        new SettingsError({
          setting,
          reason: `cannot read ${path}${
            typeof error === "object" && error !== null && "message" in error ? ` (${String(error.message)})` : ""
          }`
        }))
    const pem = settings.cert !== undefined && settings.key !== undefined
      ? { certificate: yield* read("cert", settings.cert), key: yield* read("key", settings.key) }
      : undefined
    return yield* resolve(settings, pem)
  })

// ---------------------------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------------------------

const redactedEnv = new Set(["TURN_USERS", "TURN_AUTH_SECRETS", "TURN_TLS_KEY_PEM"])

/**
 * The settings from configuration (`ConfigProvider`; with the default provider, environment variables), named as
 * in the module doc's table; repeatable settings are comma-separated. `TURN_TLS_CERT_PEM` and `TURN_TLS_KEY_PEM`
 * hold PEM text, not paths: see {@link config}. `TURN_USERS`, `TURN_AUTH_SECRETS` and `TURN_TLS_KEY_PEM` are read
 * as `Redacted`.
 *
 * @since 0.1.0
 * @category config
 */
export const settingsConfig: Config.Config<Settings> = Config.all(
  Object.entries(definitions).map(([name, definition]) =>
    Config.map(
      Config.option(
        redactedEnv.has(definition.env)
          ? Config.map(Config.redacted(definition.env), Redacted.value)
          : Config.string(definition.env)
      ),
      (raw) => ({ name, env: definition.env, kind: definition.kind, raw })
    )
  )
).pipe(Config.mapOrFail((entries) => {
  let settings = empty
  for (const entry of entries) {
    if (Option.isNone(entry.raw)) continue
    const values = entry.kind === "list"
      ? entry.raw.value.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
      : [entry.raw.value.trim()]
    for (const v of values) {
      if (entry.kind === "flag") {
        const flag = bool(v)
        if (Either.isLeft(flag)) return Either.left(ConfigError.InvalidData([entry.env], flag.left))
        if (!flag.right) continue
      }
      const next = applySetting(settings, entry.name, entry.kind === "flag" ? undefined : v)
      if (Either.isLeft(next)) return Either.left(ConfigError.InvalidData([entry.env], next.left))
      settings = next.right
    }
  }
  return Either.right(settings)
}))

/**
 * The server options from configuration (environment variables by default; see the module doc), with the TLS
 * certificate and key as PEM text in `TURN_TLS_CERT_PEM` and `TURN_TLS_KEY_PEM`. `TURN_METRICS_PORT` is read but
 * has no server option: serve `Prometheus` yourself.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<TurnServer.Options> = settingsConfig.pipe(
  Config.mapOrFail((settings) => {
    const pem = settings.cert !== undefined && settings.key !== undefined
      ? { certificate: settings.cert, key: settings.key }
      : undefined
    return Either.mapLeft(
      resolve(settings, pem),
      (error) => ConfigError.InvalidData([definitions[error.setting]?.env ?? error.setting], error.reason)
    )
  })
)

/**
 * A `TurnServer` configured by {@link config}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<
  TurnServer.TurnServer,
  ConfigError.ConfigError | Network.NetworkError,
  Network.Network
> = Layer.scoped(TurnServer.TurnServer, Effect.flatMap(config, TurnServer.make))
