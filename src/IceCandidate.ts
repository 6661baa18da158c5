/**
 * ICE candidates: what they are, how an agent ranks them, and how they are written in SDP and in the WebRTC
 * `RTCIceCandidateInit` JSON shape.
 *
 * Implements:
 * - RFC 8445 §5.1.1.3 foundations. Two candidates share a foundation when they have the same type, their bases
 *   have the same IP address, they were obtained from a STUN or TURN server with the same IP address (server
 *   reflexive and relayed candidates only; the server's port does not count, as the RFC says "the same IP
 *   address"), and they use the same transport. `foundation` hashes exactly those four things, so it is
 *   deterministic: decimal digits of a 32-bit hash, as browsers write them.
 * - RFC 8445 §5.1.2 priorities: `2^24 × type preference + 2^8 × local preference + (256 − component ID)`, with the
 *   recommended type preferences of §5.1.2.2 (host 126, peer reflexive 110, server reflexive 100, relayed 0) and a
 *   local preference of 65535 for an agent with a single IP address (§5.1.2.1).
 * - RFC 8445 §5.1.3 eliminating redundant candidates: same transport address and same base, keep the
 *   higher-priority one.
 * - RFC 8839 §5.1 the `candidate-attribute` grammar, written and read without the `a=` prefix:
 *   `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
 *   [raddr <address>] [rport <port>] *(<extension-name> <extension-value>)`. ABNF literals are case-insensitive,
 *   so `UDP` (as Firefox writes it), `TYP` or `RADDR` are read; `toSdp` writes lowercase as Chrome does.
 *   Unknown extensions (`generation 0 ufrag EsAw network-id 1 network-cost 10`) are kept verbatim and in order.
 * - RFC 6544 §4.5 the `tcptype` extension (`active`, `passive`, `so`) of ICE-TCP candidates; an active candidate
 *   has no listening port and browsers write `9` (the discard port) there, others `0`; both are read.
 *
 * What `fromSdp` accepts, precisely: an optional `a=`, then `candidate:` and a foundation of 1 to 32 ice-chars
 * (ALPHA, DIGIT, `+`, `/`); a component ID of 1 to 3 digits in 1–256; transport `udp` or `tcp` in any case (other
 * transports, such as `UDP/TLS/...` or `tls`, are refused); a priority of 1 to 10 digits in 0–2^32−1; an IPv4 or
 * IPv6 address (printed canonically, RFC 5952) or an mDNS name ending in `.local` (kept verbatim; any other host
 * name is refused, since the candidate would need DNS first); a port of 1 to 5 digits in 0–65535; `typ` and one of
 * `host`, `srflx`, `prflx`, `relay`; then name–value pairs. `raddr`, `rport` and `tcptype` are recognised wherever
 * they appear among the pairs (and written back in RFC order), each at most once; `tcptype` only on a TCP
 * candidate. A name without a value is refused. Spaces and tabs between tokens may repeat and a trailing CRLF is
 * ignored, but a CR, LF or NUL inside the line is refused, so a peer's candidate cannot inject SDP lines when it is
 * written into an offer or answer. Nothing here throws: bad input gives a `CandidateParseError` saying which field is wrong.
 *
 * @since 0.1.0
 */
import { Data, Either, Option } from "effect"
import * as TransportAddress from "./TransportAddress.js"

/**
 * Candidate types (RFC 8445 §5.1.1): host, server reflexive, peer reflexive, relayed.
 *
 * @since 0.1.0
 * @category models
 */
export type CandidateType = "host" | "srflx" | "prflx" | "relay"

/**
 * The transport protocols a candidate can use (RFC 8445 for UDP, RFC 6544 for TCP).
 *
 * @since 0.1.0
 * @category models
 */
export type CandidateTransport = "udp" | "tcp"

/**
 * The ICE-TCP candidate kinds (RFC 6544 §4.5): `active` opens connections, `passive` accepts them, `so`
 * (simultaneous open) does both at once.
 *
 * @since 0.1.0
 * @category models
 */
export type TcpType = "active" | "passive" | "so"

/**
 * One ICE candidate, as exchanged with the peer (RFC 8445 §5.1, RFC 8839 §5.1).
 *
 * Optional fields are absent (not `undefined`) in the values this module builds, so two equal candidates compare
 * equal with a deep equality.
 *
 * @since 0.1.0
 * @category models
 */
export interface Candidate {
  /** 1 to 32 ice-chars. */
  readonly foundation: string
  /** 1 to 256 (1 = RTP). */
  readonly component: number
  readonly transport: CandidateTransport
  /** An unsigned 32-bit integer, 1 to 2^31 − 1 in practice. */
  readonly priority: number
  /** Canonical IP text (`TransportAddress.canonicalIp`) or an mDNS name `<uuid>.local`. */
  readonly address: string
  /** 0 to 65535 (0 or 9 for an RFC 6544 active candidate). */
  readonly port: number
  readonly type: CandidateType
  /** `raddr`. */
  readonly relatedAddress?: string | undefined
  /** `rport`. */
  readonly relatedPort?: number | undefined
  /** Only when `transport` is `"tcp"`. */
  readonly tcpType?: TcpType | undefined
  /** Extension attributes kept verbatim, in order, e.g. `[["generation","0"],["ufrag","abcd"],["network-id","1"]]`. */
  readonly extensions: ReadonlyArray<readonly [string, string]>
}

/**
 * The recommended type preferences: RFC 8445 §5.1.2.2 ("The RECOMMENDED values for type preferences are 126 for
 * host candidates, 110 for peer-reflexive candidates, 100 for server-reflexive candidates, and 0 for relayed
 * candidates").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTypePreference: {
  readonly host: 126
  readonly prflx: 110
  readonly srflx: 100
  readonly relay: 0
} = { host: 126, prflx: 110, srflx: 100, relay: 0 }

/**
 * The local preference of an agent with one IP address: RFC 8445 §5.1.2.1 ("When there is only a single IP
 * address, this value SHOULD be set to 65535").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLocalPreference = 65535

/**
 * The candidate priority of RFC 8445 §5.1.2.1: `2^24 × typePreference + 2^8 × localPreference + (256 − component)`.
 * Defaults: component 1, local preference 65535, type preference from `defaultTypePreference`. A pure formula: the
 * caller keeps its inputs in range (type preference 0–126, local preference 0–65535, component 1–256).
 *
 * @since 0.1.0
 * @category constructors
 */
export const priority = (options: {
  readonly type: CandidateType
  readonly component?: number | undefined
  readonly localPreference?: number | undefined
  readonly typePreference?: number | undefined
}): number => {
  const typePreference = options.typePreference ?? defaultTypePreference[options.type]
  const localPreference = options.localPreference ?? defaultLocalPreference
  const component = options.component ?? 1
  return typePreference * 0x1000000 + localPreference * 0x100 + (256 - component)
}

/** An IP in canonical text, or the text itself lowercased (mDNS and other names compare case-insensitively). */
const normalizeHost = (text: string): string => {
  const canonical = TransportAddress.canonicalIp(text)
  return Option.isSome(canonical) ? canonical.value.ip : text.toLowerCase()
}

/** The IP (or host name) of a server given as `ip`, `ip:port`, `[ipv6]:port` or `host:port`. */
const serverHost = (text: string): string => {
  const canonical = TransportAddress.canonicalIp(text)
  if (Option.isSome(canonical)) return canonical.value.ip
  const parsed = TransportAddress.parse(text)
  if (Either.isRight(parsed)) return parsed.right.ip
  const hostPort = /^([^:[\]]+):\d+$/.exec(text)
  return hostPort !== null ? hostPort[1]!.toLowerCase() : text.toLowerCase()
}

/** 32-bit FNV-1a over UTF-16 code units, with the murmur3 finalizer for a better spread of similar inputs. */
const hash32 = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * The foundation of RFC 8445 §5.1.1.3: equal for candidates of the same type, whose bases have the same IP, obtained
 * from a server with the same IP (server reflexive and relayed only; a server's port is ignored, a host name is
 * compared case-insensitively) over the same transport; different otherwise (up to 32-bit hash collisions).
 * Deterministic: the decimal digits of a 32-bit hash of those four values, 1 to 10 characters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const foundation = (options: {
  readonly type: CandidateType
  readonly baseAddress: string
  readonly serverAddress?: string | undefined
  readonly transport: CandidateTransport
}): string => {
  const server = (options.type === "srflx" || options.type === "relay") && options.serverAddress !== undefined
    ? serverHost(options.serverAddress)
    : ""
  return String(
    hash32(`${options.type}\u0000${normalizeHost(options.baseAddress)}\u0000${server}\u0000${options.transport}`)
  )
}

const canonicalAddress = (text: string): string => {
  const canonical = TransportAddress.canonicalIp(text)
  return Option.isSome(canonical) ? canonical.value.ip : text
}

/**
 * Builds a candidate, computing its priority (§5.1.2) and foundation (§5.1.1.3) unless given. Defaults: component 1,
 * transport `udp`, local preference 65535, no extensions. The foundation's base address defaults to `address` for a
 * host candidate and to `relatedAddress` (falling back to `address`) for the others. IP addresses are stored in
 * canonical text; `tcpType` is kept only for a TCP candidate.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (fields: {
  readonly type: CandidateType
  readonly address: string
  readonly port: number
  readonly component?: number | undefined
  readonly transport?: CandidateTransport | undefined
  readonly baseAddress?: string | undefined
  readonly serverAddress?: string | undefined
  readonly localPreference?: number | undefined
  readonly priority?: number | undefined
  readonly foundation?: string | undefined
  readonly relatedAddress?: string | undefined
  readonly relatedPort?: number | undefined
  readonly tcpType?: TcpType | undefined
  readonly extensions?: ReadonlyArray<readonly [string, string]> | undefined
}): Candidate => {
  const component = fields.component ?? 1
  const transport = fields.transport ?? "udp"
  const baseAddress = fields.baseAddress ??
    (fields.type === "host" ? fields.address : fields.relatedAddress ?? fields.address)
  const candidate: {
    -readonly [K in keyof Candidate]: Candidate[K]
  } = {
    foundation: fields.foundation ??
      foundation({ type: fields.type, baseAddress, serverAddress: fields.serverAddress, transport }),
    component,
    transport,
    priority: fields.priority ??
      priority({ type: fields.type, component, localPreference: fields.localPreference }),
    address: canonicalAddress(fields.address),
    port: fields.port,
    type: fields.type,
    extensions: fields.extensions ?? []
  }
  if (fields.relatedAddress !== undefined) candidate.relatedAddress = canonicalAddress(fields.relatedAddress)
  if (fields.relatedPort !== undefined) candidate.relatedPort = fields.relatedPort
  if (fields.tcpType !== undefined && transport === "tcp") candidate.tcpType = fields.tcpType
  return candidate
}

/**
 * The identity of a candidate's transport address: `transport|address|port`, plus `|tcpType` for a TCP candidate
 * that has one (`"udp|192.0.2.1|54400"`, `"tcp|192.0.2.1|9|active"`). mDNS names are lowercased.
 *
 * @since 0.1.0
 * @category conversions
 */
export const key = (candidate: Candidate): string => {
  const base = `${candidate.transport}|${candidate.address.toLowerCase()}|${candidate.port}`
  return candidate.transport === "tcp" && candidate.tcpType !== undefined ? `${base}|${candidate.tcpType}` : base
}

/**
 * Whether the candidate's address is an mDNS name (ends in `.local`, case-insensitive): a host candidate whose IP
 * the browser hides (draft-ietf-mmusic-mdns-ice-candidates). It must be resolved before it can be paired.
 *
 * @since 0.1.0
 * @category guards
 */
export const isMdns = (candidate: Candidate): boolean => candidate.address.toLowerCase().endsWith(".local")

/**
 * The IP family of the candidate's address, or `None` for an mDNS name.
 *
 * @since 0.1.0
 * @category getters
 */
export const addressFamily = (candidate: Candidate): Option.Option<TransportAddress.Family> =>
  TransportAddress.familyOf(candidate.address)

/**
 * RFC 8445 §5.1.3: a candidate is redundant when its transport address (`key`) and its base (`baseKey`) equal
 * another's; of those, the one with the higher priority is kept (the first on a tie). The survivors keep their
 * order. Generic, so the agent can carry its own data along with each candidate.
 *
 * @since 0.1.0
 * @category combinators
 */
export const eliminateRedundant = <A extends { readonly candidate: Candidate; readonly baseKey: string }>(
  items: ReadonlyArray<A>
): Array<A> => {
  const best = new Map<string, number>()
  items.forEach((item, index) => {
    const id = `${key(item.candidate)}#${item.baseKey}`
    const current = best.get(id)
    if (current === undefined || item.candidate.priority > items[current]!.candidate.priority) best.set(id, index)
  })
  return items.filter((item, index) => best.get(`${key(item.candidate)}#${item.baseKey}`) === index)
}

/**
 * Why a candidate line could not be read: `reason` names the field and the problem, `input` is the line as given.
 *
 * @since 0.1.0
 * @category errors
 */
export class CandidateParseError extends Data.TaggedError("CandidateParseError")<{
  readonly reason: string
  readonly input: string
}> {
  override get message(): string {
    return `cannot parse ICE candidate ${JSON.stringify(this.input)}: ${this.reason}`
  }
}

/**
 * Writes the RFC 8839 §5.1 candidate attribute without `a=`:
 * `candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host`, then ` raddr X` and ` rport Y` when set, ` tcptype T`
 * for a TCP candidate that has one, then each extension as ` name value`. The transport is written lowercase, as
 * Chrome and Firefox's parsers expect; a line Chrome wrote comes back byte for byte.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toSdp = (candidate: Candidate): string => {
  let line = `candidate:${candidate.foundation} ${candidate.component} ${candidate.transport} ${candidate.priority} ` +
    `${candidate.address} ${candidate.port} typ ${candidate.type}`
  if (candidate.relatedAddress !== undefined) line += ` raddr ${candidate.relatedAddress}`
  if (candidate.relatedPort !== undefined) line += ` rport ${candidate.relatedPort}`
  if (candidate.transport === "tcp" && candidate.tcpType !== undefined) line += ` tcptype ${candidate.tcpType}`
  for (const [name, value] of candidate.extensions) line += ` ${name} ${value}`
  return line
}

const iceChars = /^[A-Za-z0-9+/]{1,32}$/
const digits = (max: number) => new RegExp(`^[0-9]{1,${max}}$`)
const componentDigits = digits(3)
const priorityDigits = digits(10)
const portDigits = digits(5)
/** An mDNS host name: dot-separated labels of letters, digits and hyphens, the last one `local`. */
const mdnsName = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+local$/i

const parseAddress = (text: string): string | undefined => {
  const canonical = TransportAddress.canonicalIp(text)
  if (Option.isSome(canonical)) return canonical.value.ip
  return text.length <= 253 && mdnsName.test(text) ? text : undefined
}

const parsePort = (text: string): number | undefined => {
  if (!portDigits.test(text)) return undefined
  const port = Number(text)
  return port <= 65535 ? port : undefined
}

const candidateTypes: ReadonlyArray<CandidateType> = ["host", "srflx", "prflx", "relay"]
const tcpTypes: ReadonlyArray<TcpType> = ["active", "passive", "so"]

/**
 * Reads an RFC 8839 §5.1 candidate attribute, with or without a leading `a=` (see the module documentation for
 * exactly what is accepted). The transport is read case-insensitively (`UDP`, `udp`, `TCP`); IPv4 and IPv6 addresses
 * are stored in canonical text, `<name>.local` mDNS names verbatim; unknown extension pairs are kept in order. Wrong
 * field count, non-numeric or out-of-range numbers, an unknown `typ`, an unsupported transport or address give a
 * `Left(CandidateParseError)`. Never throws.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromSdp = (line: string): Either.Either<Candidate, CandidateParseError> => {
  if (typeof line !== "string") {
    return Either.left(new CandidateParseError({ reason: "not a string", input: String(line) }))
  }
  const fail = (reason: string) => Either.left(new CandidateParseError({ reason, input: line }))
  let text = line.trim()
  // A CR, LF or NUL inside the line would let a peer's candidate smuggle extra lines into an SDP it is copied into.
  if (/[\r\n\0]/.test(text)) return fail("contains a CR, LF or NUL character")
  if (text.startsWith("a=")) text = text.slice(2)
  if (!text.toLowerCase().startsWith("candidate:")) return fail("does not start with \"candidate:\"")
  const tokens = text.slice("candidate:".length).split(/[ \t]+/)
  if (tokens.length < 8) return fail(`expected at least 8 fields, got ${tokens.length}`)
  const [foundationText, componentText, transportText, priorityText, addressText, portText, typText, typeText] =
    tokens as [string, string, string, string, string, string, string, string]
  if (!iceChars.test(foundationText)) return fail(`foundation ${JSON.stringify(foundationText)} is not 1-32 ice-chars`)
  if (!componentDigits.test(componentText)) return fail(`component ${JSON.stringify(componentText)} is not a number`)
  const component = Number(componentText)
  if (component < 1 || component > 256) return fail(`component ${component} is outside 1-256`)
  const transport = transportText.toLowerCase()
  if (transport !== "udp" && transport !== "tcp") return fail(`unsupported transport ${JSON.stringify(transportText)}`)
  if (!priorityDigits.test(priorityText)) return fail(`priority ${JSON.stringify(priorityText)} is not a number`)
  const priorityValue = Number(priorityText)
  if (priorityValue > 0xffffffff) return fail(`priority ${priorityValue} exceeds 2^32-1`)
  const address = parseAddress(addressText)
  if (address === undefined) return fail(`address ${JSON.stringify(addressText)} is not an IP or an mDNS .local name`)
  const port = parsePort(portText)
  if (port === undefined) return fail(`port ${JSON.stringify(portText)} is not a number in 0-65535`)
  if (typText.toLowerCase() !== "typ") return fail(`expected "typ", got ${JSON.stringify(typText)}`)
  const type = candidateTypes.find((t) => t === typeText.toLowerCase())
  if (type === undefined) return fail(`unknown candidate type ${JSON.stringify(typeText)}`)
  const rest = tokens.slice(8)
  if (rest.length % 2 !== 0) return fail(`extension ${JSON.stringify(rest[rest.length - 1])} has no value`)
  let relatedAddress: string | undefined
  let relatedPort: number | undefined
  let tcpType: TcpType | undefined
  const extensions: Array<readonly [string, string]> = []
  for (let i = 0; i < rest.length; i += 2) {
    const name = rest[i]!
    const value = rest[i + 1]!
    switch (name.toLowerCase()) {
      case "raddr": {
        if (relatedAddress !== undefined) return fail("raddr appears twice")
        relatedAddress = parseAddress(value)
        if (relatedAddress === undefined) {
          return fail(`raddr ${JSON.stringify(value)} is not an IP or an mDNS .local name`)
        }
        break
      }
      case "rport": {
        if (relatedPort !== undefined) return fail("rport appears twice")
        relatedPort = parsePort(value)
        if (relatedPort === undefined) return fail(`rport ${JSON.stringify(value)} is not a number in 0-65535`)
        break
      }
      case "tcptype": {
        if (transport !== "tcp") return fail("tcptype on a UDP candidate")
        if (tcpType !== undefined) return fail("tcptype appears twice")
        tcpType = tcpTypes.find((t) => t === value.toLowerCase())
        if (tcpType === undefined) return fail(`unknown tcptype ${JSON.stringify(value)}`)
        break
      }
      default:
        extensions.push([name, value])
    }
  }
  // Built in one shape (the key order of `make`), whatever order the line had its fields in.
  const candidate: { -readonly [K in keyof Candidate]: Candidate[K] } = {
    foundation: foundationText,
    component,
    transport,
    priority: priorityValue,
    address,
    port,
    type,
    extensions
  }
  if (relatedAddress !== undefined) candidate.relatedAddress = relatedAddress
  if (relatedPort !== undefined) candidate.relatedPort = relatedPort
  if (tcpType !== undefined) candidate.tcpType = tcpType
  return Either.right(candidate)
}

/**
 * The WebRTC `RTCIceCandidateInit` shape: `candidate` is the attribute without `a=`, and `""` means
 * end-of-candidates.
 *
 * @since 0.1.0
 * @category models
 */
export interface CandidateInit {
  readonly candidate: string
  readonly sdpMid?: string | null | undefined
  readonly sdpMLineIndex?: number | null | undefined
  readonly usernameFragment?: string | null | undefined
}

/**
 * A candidate as `RTCIceCandidateInit` JSON: `{ candidate: toSdp(candidate) }` plus those of `sdpMid`,
 * `sdpMLineIndex` and `usernameFragment` that are given (absent ones are left out, which a browser reads as `null`).
 *
 * @since 0.1.0
 * @category encoding
 */
export const toInit = (
  candidate: Candidate,
  options?: { readonly sdpMid?: string; readonly sdpMLineIndex?: number; readonly usernameFragment?: string }
): CandidateInit => {
  const init: { -readonly [K in keyof CandidateInit]: CandidateInit[K] } = { candidate: toSdp(candidate) }
  if (options?.sdpMid !== undefined) init.sdpMid = options.sdpMid
  if (options?.sdpMLineIndex !== undefined) init.sdpMLineIndex = options.sdpMLineIndex
  if (options?.usernameFragment !== undefined) init.usernameFragment = options.usernameFragment
  return init
}

/**
 * The end-of-candidates indication in `RTCIceCandidateInit` form (`candidate: ""`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const endOfCandidates: CandidateInit = { candidate: "" }

/**
 * Reads `RTCIceCandidateInit` JSON: `Right(None)` for end-of-candidates (`candidate` empty or only whitespace),
 * `Right(Some(candidate))` for a line `fromSdp` accepts, `Left` otherwise (also when `candidate` is not a string, as
 * untrusted JSON may have it). Never throws.
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromInit = (init: CandidateInit): Either.Either<Option.Option<Candidate>, CandidateParseError> => {
  const line: unknown = typeof init === "object" && init !== null ? init.candidate : undefined
  if (typeof line !== "string") {
    return Either.left(new CandidateParseError({ reason: "candidate is not a string", input: String(line) }))
  }
  if (line.trim() === "") return Either.right(Option.none())
  return Either.map(fromSdp(line), Option.some)
}
