/**
 * ICE server configuration in the WebRTC shape (`RTCIceServer`, `RTCIceTransportPolicy`) and the STUN and TURN URIs
 * it carries, parsed into a normalized list the agent and the gatherer use.
 *
 * Implements:
 * - RFC 7064 §3.1: `stun:host[:port]` and `stuns:host[:port]`; default ports 3478 and 5349.
 * - RFC 7065 §3.1: `turn:host[:port][?transport=udp|tcp]` and `turns:host[:port][?transport=tcp]`; default ports 3478
 *   and 5349. Without a `transport` parameter `turn:` is UDP and `turns:` is TLS over TCP, as browsers do. `turns:`
 *   with `transport=tcp` is TLS (`"tls"` for `TurnClient`); `turns:` with `transport=udp` would be DTLS, which this
 *   stack does not speak, and is refused as `Unsupported`, as is any other `transport-ext` value.
 * - `host` is RFC 3986 §3.2.2: an IPv6 literal in brackets (`[2001:db8::1]`), a dotted-quad IPv4 address, or a
 *   DNS name. IP hosts come out in canonical text (`TransportAddress.canonicalIp`), names in lowercase; a name is
 *   resolved later, by the agent, through `Network.lookup`.
 * - W3C WebRTC 1.0, "set a configuration": `urls` may be one string or a non-empty list; a `turn:`/`turns:` URL
 *   needs both `username` and `credential` (browsers throw `InvalidAccessError`, here `MissingCredentials`); a
 *   `stun:` URL ignores them.
 *
 * The scheme and the `transport` parameter are case-insensitive (RFC 3986 §3.1, RFC 5234 §2.3). Refused, each with
 * a typed `IceServerError`: any other scheme, userinfo (`turn:user@host`), an authority or path (`stun://host`,
 * `stun:host/x`), a fragment, a query on `stun:`, query parameters other than one `transport`, ports outside
 * 1–65535 or with leading zeros or empty, empty hosts, IPv6 zone ids and `IPvFuture`, bare IPv6 without brackets,
 * percent-encoding and whitespace. Everything is pure; nothing throws.
 *
 * @since 0.1.0
 */
import { Data, Either, Option } from "effect"
import * as TransportAddress from "./TransportAddress.js"

/**
 * Default port of `stun:` and `turn:` URIs (RFC 7064 §3.1, RFC 7065 §3.1; the IANA "stun" and "turn" port).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPort = 3478

/**
 * Default port of `stuns:` and `turns:` URIs (RFC 7064 §3.1, RFC 7065 §3.1; the IANA "stuns" and "turns" port).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultSecurePort = 5349

/**
 * One entry of `RTCConfiguration.iceServers`, as a browser takes it: one URL or several, and the TURN credentials
 * shared by all of them. `credentialType` may only be `"password"` (the WebRTC default).
 *
 * @since 0.1.0
 * @category models
 */
export interface RTCIceServerLike {
  readonly urls: string | ReadonlyArray<string>
  readonly username?: string | undefined
  readonly credential?: string | undefined
  readonly credentialType?: "password" | undefined
}

/**
 * `RTCIceTransportPolicy`: `"relay"` restricts ICE to relayed candidates (TURN only), `"all"` uses every candidate.
 *
 * @since 0.1.0
 * @category models
 */
export type IceTransportPolicy = "all" | "relay"

/**
 * A parsed `stun:` or `stuns:` URL. `host` is a canonical IP text or a lowercase DNS name; `secure` is `stuns:`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StunUrl {
  readonly kind: "stun"
  readonly host: string
  readonly port: number
  readonly secure: boolean
}

/**
 * A parsed `turn:` or `turns:` URL with its credentials. `transport` is how to reach the server: `udp`, `tcp`, or
 * `tls` (TLS over TCP, from `turns:`).
 *
 * @since 0.1.0
 * @category models
 */
export interface TurnUrl {
  readonly kind: "turn"
  readonly host: string
  readonly port: number
  readonly transport: "udp" | "tcp" | "tls"
  readonly username: string
  readonly credential: string
}

/**
 * One normalized server URL.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerUrl = StunUrl | TurnUrl

/**
 * Why a configuration was refused:
 * - `EmptyUrls`: `urls` is an empty list (browsers throw `SyntaxError`).
 * - `InvalidScheme`: no `scheme:` prefix or a scheme other than stun, stuns, turn, turns.
 * - `UserInfo`: a `user@` part (credentials belong in `username`/`credential`).
 * - `Path`: `//` (an authority), a `/` path or a `#` fragment: RFC 7064/7065 URIs have none.
 * - `EmptyHost`, `InvalidHost`: no host, or one that is neither `[IPv6]`, IPv4 nor a DNS name.
 * - `InvalidPort`: empty, not decimal, leading zeros, 0 or above 65535.
 * - `InvalidQuery`: a query on `stun:`/`stuns:`, a parameter other than `transport`, `transport` twice, or a
 *   malformed `transport` value.
 * - `Unsupported`: a well-formed transport this stack cannot use (`turns:` over UDP = DTLS, `transport-ext` such as
 *   `sctp`), or a `credentialType` other than `password`.
 * - `MissingCredentials`: a TURN URL without `username` or `credential` (browsers throw `InvalidAccessError`).
 *
 * `url` is the offending URL as given (empty for `EmptyUrls`), `detail` says more.
 *
 * @since 0.1.0
 * @category errors
 */
export class IceServerError extends Data.TaggedError("IceServerError")<{
  readonly reason:
    | "EmptyUrls"
    | "InvalidScheme"
    | "UserInfo"
    | "Path"
    | "EmptyHost"
    | "InvalidHost"
    | "InvalidPort"
    | "InvalidQuery"
    | "Unsupported"
    | "MissingCredentials"
  readonly url: string
  readonly detail: string
}> {
  override get message(): string {
    return `invalid ICE server URL ${JSON.stringify(this.url)}: ${this.reason}: ${this.detail}`
  }
}

/**
 * A URL's scheme, host, port and transport, before credentials are attached (`parseUrl`'s result).
 *
 * @since 0.1.0
 * @category models
 */
export type UrlWithoutCredentials = StunUrl | Omit<TurnUrl, "username" | "credential">

const fail = (reason: IceServerError["reason"], url: string, detail: string) =>
  Either.left(new IceServerError({ reason, url, detail }))

const schemes = {
  stun: { kind: "stun", secure: false },
  stuns: { kind: "stun", secure: true },
  turn: { kind: "turn", secure: false },
  turns: { kind: "turn", secure: true }
} as const

// RFC 3986 §2.3 unreserved, the characters of RFC 7065's transport-ext.
const unreserved = /^[A-Za-z0-9\-._~]+$/
const portText = /^[1-9][0-9]{0,4}$/
// A DNS name (RFC 1123 §2.1): letters, digits and hyphens, labels of 1-63, not starting or ending with a hyphen.
// Underscores are tolerated (they occur in real names); a trailing dot (fully qualified) is allowed.
const label = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/

const parseName = (text: string): string | undefined => {
  const name = text.endsWith(".") ? text.slice(0, -1) : text
  if (name.length === 0 || name.length > 253) return undefined
  const labels = name.split(".")
  if (!labels.every((l) => label.test(l))) return undefined
  // An all-numeric last label is a mistyped IPv4 address ("1.2.3.256"), never a name (RFC 3696 §2).
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined
  return text.toLowerCase()
}

const parseHost = (url: string, text: string): Either.Either<string, IceServerError> => {
  if (text.length === 0) return fail("EmptyHost", url, "the host is empty")
  if (text.startsWith("[")) {
    if (!text.endsWith("]")) return fail("InvalidHost", url, "an IPv6 literal needs a closing bracket")
    const inner = text.slice(1, -1)
    if (inner.length === 0) return fail("EmptyHost", url, "the IPv6 literal is empty")
    if (inner.includes("%")) return fail("InvalidHost", url, "IPv6 zone identifiers are not allowed")
    const v6 = TransportAddress.parseIPv6(inner)
    if (Option.isNone(v6)) return fail("InvalidHost", url, `${JSON.stringify(inner)} is not an IPv6 address`)
    return Either.right(TransportAddress.formatIPv6(v6.value))
  }
  if (text.includes(":")) {
    return fail("InvalidHost", url, "an IPv6 address must be written in brackets")
  }
  const v4 = TransportAddress.parseIPv4(text)
  if (Option.isSome(v4)) return Either.right(TransportAddress.formatIPv4(v4.value))
  const name = parseName(text)
  if (name === undefined) return fail("InvalidHost", url, `${JSON.stringify(text)} is not an IP address or DNS name`)
  return Either.right(name)
}

/**
 * Parses one `stun:`, `stuns:`, `turn:` or `turns:` URL (RFC 7064 §3.1, RFC 7065 §3.1) into its kind, host, port,
 * and `secure` flag or transport, without credentials. Never throws.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseUrl = (url: string): Either.Either<UrlWithoutCredentials, IceServerError> => {
  const colon = url.indexOf(":")
  if (colon < 0) return fail("InvalidScheme", url, "no scheme")
  const schemeText = url.slice(0, colon).toLowerCase()
  if (!Object.hasOwn(schemes, schemeText)) {
    return fail("InvalidScheme", url, `scheme ${JSON.stringify(url.slice(0, colon))} is not stun, stuns, turn or turns`)
  }
  const scheme = schemes[schemeText as keyof typeof schemes]
  let rest = url.slice(colon + 1)
  if (rest.startsWith("//")) {
    return fail("Path", url, `"//" is not part of ${schemeText}: URIs (write ${schemeText}:host)`)
  }
  if (rest.includes("#")) return fail("Path", url, "a fragment is not allowed")
  let query: string | undefined
  const question = rest.indexOf("?")
  if (question >= 0) {
    query = rest.slice(question + 1)
    rest = rest.slice(0, question)
  }
  if (rest.includes("@")) return fail("UserInfo", url, "userinfo is not allowed; use username and credential")
  if (rest.includes("/")) return fail("Path", url, "a path is not allowed")
  // Split host and port: the port follows the last colon, unless that colon is inside an IPv6 literal.
  let hostText = rest
  let port = scheme.secure ? defaultSecurePort : defaultPort
  const close = rest.lastIndexOf("]")
  const portColon = rest.lastIndexOf(":")
  if (portColon >= 0 && portColon > close && (close >= 0 || rest.indexOf(":") === portColon)) {
    hostText = rest.slice(0, portColon)
    const portString = rest.slice(portColon + 1)
    if (!portText.test(portString) || Number(portString) > 65535) {
      return fail("InvalidPort", url, `port ${JSON.stringify(portString)} is not 1-65535`)
    }
    port = Number(portString)
  }
  if (/[\s%]/.test(hostText) && !hostText.startsWith("[")) {
    return fail("InvalidHost", url, "whitespace and percent-encoding are not allowed in a host")
  }
  const host = parseHost(url, hostText)
  if (Either.isLeft(host)) return Either.left(host.left)
  if (scheme.kind === "stun") {
    if (query !== undefined) return fail("InvalidQuery", url, `${schemeText}: URIs take no query (RFC 7064)`)
    return Either.right({ kind: "stun", host: host.right, port, secure: scheme.secure })
  }
  let transportName: string | undefined
  if (query !== undefined) {
    for (const parameter of query.split("&")) {
      const equals = parameter.indexOf("=")
      const name = equals < 0 ? parameter : parameter.slice(0, equals)
      if (name.toLowerCase() !== "transport" || equals < 0) {
        return fail("InvalidQuery", url, `unknown query parameter ${JSON.stringify(name)}; only transport is defined`)
      }
      if (transportName !== undefined) return fail("InvalidQuery", url, "transport is given twice")
      const value = parameter.slice(equals + 1)
      if (!unreserved.test(value)) return fail("InvalidQuery", url, `transport ${JSON.stringify(value)} is malformed`)
      transportName = value.toLowerCase()
    }
  }
  let transport: "udp" | "tcp" | "tls"
  if (transportName === undefined) {
    transport = scheme.secure ? "tls" : "udp"
  } else if (transportName === "tcp") {
    transport = scheme.secure ? "tls" : "tcp"
  } else if (transportName === "udp") {
    if (scheme.secure) return fail("Unsupported", url, "turns: over UDP would be DTLS, which is not supported")
    transport = "udp"
  } else {
    return fail("Unsupported", url, `transport ${JSON.stringify(transportName)} is not supported`)
  }
  return Either.right({ kind: "turn", host: host.right, port, transport })
}

/**
 * Parses `RTCConfiguration.iceServers` into one `ServerUrl` per URL, in order (duplicates are kept). TURN URLs get
 * the entry's `username` and `credential`, which must both be present; STUN URLs ignore them. The first problem
 * found is returned. Never throws.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (servers: ReadonlyArray<RTCIceServerLike>): Either.Either<Array<ServerUrl>, IceServerError> => {
  const out: Array<ServerUrl> = []
  for (const server of servers) {
    const urls: ReadonlyArray<string> = typeof server.urls === "string" ? [server.urls] : server.urls
    if (urls.length === 0) return fail("EmptyUrls", "", "urls is an empty list")
    for (const url of urls) {
      const parsed = parseUrl(url)
      if (Either.isLeft(parsed)) return Either.left(parsed.left)
      const value = parsed.right
      if (value.kind === "stun") {
        out.push(value)
        continue
      }
      if (server.credentialType !== undefined && server.credentialType !== "password") {
        return fail("Unsupported", url, `credentialType ${JSON.stringify(server.credentialType)} is not supported`)
      }
      if (server.username === undefined || server.credential === undefined) {
        return fail("MissingCredentials", url, "a TURN URL needs username and credential")
      }
      out.push({ ...value, username: server.username, credential: server.credential })
    }
  }
  return Either.right(out)
}

const formatHost = (host: string): string => (host.includes(":") ? `[${host}]` : host)

/**
 * Formats a URL back to its URI text, always with the port, and for TURN always with the transport:
 * `stun:192.0.2.1:3478`, `stuns:[2001:db8::1]:5349`, `turn:example.org:3478?transport=udp`,
 * `turns:example.org:5349?transport=tcp` (TLS). Credentials are not part of the URI. `parseUrl` gives the same
 * value back.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (url: UrlWithoutCredentials): string => {
  if (url.kind === "stun") return `${url.secure ? "stuns" : "stun"}:${formatHost(url.host)}:${url.port}`
  const scheme = url.transport === "tls" ? "turns" : "turn"
  const transport = url.transport === "udp" ? "udp" : "tcp"
  return `${scheme}:${formatHost(url.host)}:${url.port}?transport=${transport}`
}

/**
 * The `RTCIceServer` entry for one URL: `{ urls }` for STUN, `{ urls, username, credential }` for TURN.
 *
 * @since 0.1.0
 * @category formatting
 */
export const toIceServer = (url: ServerUrl): RTCIceServerLike =>
  url.kind === "stun"
    ? { urls: format(url) }
    : { urls: format(url), username: url.username, credential: url.credential }

/**
 * The host's address family when it is an IP address, `None` when it is a DNS name to resolve.
 *
 * @since 0.1.0
 * @category guards
 */
export const hostFamily = (url: ServerUrl | UrlWithoutCredentials): Option.Option<TransportAddress.Family> =>
  TransportAddress.familyOf(url.host)

/**
 * The URLs a transport policy lets the agent use: all of them for `"all"`, only TURN for `"relay"` (a STUN server
 * only yields server-reflexive candidates, which `"relay"` discards).
 *
 * @since 0.1.0
 * @category combinators
 */
export const forPolicy = (urls: ReadonlyArray<ServerUrl>, policy: IceTransportPolicy): Array<ServerUrl> =>
  policy === "relay" ? urls.filter((url) => url.kind === "turn") : [...urls]

/**
 * Whether a value is an `RTCIceTransportPolicy`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isIceTransportPolicy = (value: unknown): value is IceTransportPolicy =>
  value === "all" || value === "relay"
