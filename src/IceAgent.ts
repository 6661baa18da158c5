/**
 * The ICE agent (RFC 8445), full implementation, one data stream and one component, with trickle (RFC 8838),
 * consent freshness (RFC 7675) and restart.
 *
 * - Roles (§6.1.1, §7.3.1.1): controlling or controlled, with a 64-bit tie-breaker drawn from Effect's `Random`.
 *   A request carrying the same role as ours is a role conflict: the agent with the larger tie-breaker keeps its
 *   role, the other answers 487 or switches; a 487 answer to our check switches our role (§7.2.5.1) and the check
 *   is retried as a triggered check. A role change recomputes every pair priority.
 * - Credentials (§5.3): ufrag of 4 and password of 22 ice-chars (24 and 132 random bits) from `Random` unless given.
 *   Remote credentials and candidates may arrive at any time (trickle, RFC 8838): checks wait for the credentials.
 * - Checks (§6.1.4, §7.2): one check starts every Ta (default 50 ms, the {@link Ta} reference) in a paced loop
 *   (`Effect.repeat` on `Schedule.spaced(Ta)` while there is work; idle, it sleeps on a latch that any checklist
 *   change opens, never starting two checks less than Ta apart); the triggered-check queue (§6.1.4.1) is served
 *   first, then the ordinary check of `IceChecklist.nextOrdinary`. Each check is a STUN Binding request (a
 *   `StunTransaction` on the pair's base) with USERNAME `remote:local`, PRIORITY (the peer-reflexive priority,
 *   §7.1.1), ICE-CONTROLLING or ICE-CONTROLLED with the tie-breaker, USE-CANDIDATE when nominating,
 *   MESSAGE-INTEGRITY with the remote password and FINGERPRINT; the transactions live in a `FiberMap` keyed by pair.
 *   A success whose source is not the pair's remote fails the pair (symmetric check, §7.2.5.2.1); its
 *   XOR-MAPPED-ADDRESS names the valid pair's local, a new peer-reflexive candidate when it is not a known one
 *   (§7.2.5.3.1). An error answer fails the pair with its code, a timeout with "timeout", a send
 *   error with "unreachable", a refused TURN permission with the TURN error.
 * - Answering checks (§7.3): the USERNAME must start with our ufrag and MESSAGE-INTEGRITY must verify with our
 *   password (else 401; USERNAME, MESSAGE-INTEGRITY or PRIORITY missing: 400); the success carries
 *   XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT. A source that is no known remote candidate becomes a
 *   peer-reflexive remote candidate (§7.3.1.3; at most {@link maxPeerReflexive} per base, since two
 *   address-and-port-dependent NATs would otherwise grow the list without end); the pair it forms gets a triggered
 *   check (§7.3.1.4) unless it has succeeded or is in progress; USE-CANDIDATE on the controlled side nominates the
 *   pair's valid pair, at once when it has succeeded, or when its check succeeds (§7.3.1.5).
 * - Nomination (§8.1.1, regular nomination): the controlling agent nominates the best valid pair once no pair of
 *   higher priority is still waiting, frozen or in progress, or {@link NominationDelay} after the first valid pair,
 *   whichever comes first, by checking it again with USE-CANDIDATE. The selected pair is the best valid nominated
 *   pair; ordinary checks stop then.
 * - State: a `SubscriptionRef` with the `RTCIceTransportState` names. `new` until the first check; `checking`;
 *   `connected` once a pair is selected, `completed` when moreover local gathering is complete and the remote sent
 *   end-of-candidates; `disconnected` when a consent check went unanswered; `failed` when every pair failed after
 *   gathering completed and the remote's candidates ended (or after the optional `failAfter`), with an
 *   {@link IceFailed} that lists each pair and why it failed, or when consent expired; `closed` when the scope
 *   closes. Never stuck in `checking`: a pair's check ends in success or failure within the STUN transaction's
 *   39.5 s.
 * - Keepalives (§11): a Binding indication on the selected pair when nothing was sent on it for
 *   {@link KeepaliveInterval} (15 s).
 * - Consent freshness (RFC 7675 §5.1): a Binding check on the selected pair every {@link ConsentInterval}
 *   (5 s) × a uniform factor in [0.8, 1.2] from `Random` (so 4–6 s); a check unanswered when the next is due makes
 *   the state `disconnected` (an answer later makes it `connected` again); {@link ConsentExpiry} (30 s) after the
 *   last answer the state is `failed` with {@link ConsentExpired} and the agent stops sending on the pair.
 * - Restart (§9): new ufrag and password, new gathering (new sockets and allocations), a new checklist; the old
 *   selected pair keeps carrying data (and its consent checks) until the new checklist selects a pair, then the old
 *   generation's sockets and allocations are released. A change of the remote credentials restarts too.
 * - Data: `send` sends on the selected pair; what arrives on any base that is not STUN (RFC 7983 first-byte
 *   demultiplexing, `PacketDemux`) from a known remote goes, in plain code, to a bounded `Mailbox` read as `data`.
 * - ICE-lite (RFC 8445 §2.5, the `lite` option): host candidates only; always controlled (§6.1.1: a request
 *   carrying ICE-CONTROLLED is answered 487 whatever the tie-breakers, so the full peer takes the controlling role);
 *   no checks of its own, no triggered checks, no consent checks or keepalives (it answers the peer's, RFC 7675
 *   §5.2); a request it answers makes its pair valid (§7.3.2), and USE-CANDIDATE nominates it, so the pair the full
 *   peer nominates is selected (§8.2). Its `Credentials` event carries `lite: true` (`a=ice-lite`, RFC 8839 §5.3);
 *   a full agent given that (`receive`, or `addRemoteCredentials(credentials, { lite: true })`) becomes
 *   controlling (§6.1.1). Two lite agents are left to the application (neither would check).
 * - UDP mux (the `mux` option, `IceUdpMux`): the shared socket is the agent's only host base, registered under each
 *   generation's ufrag (8 ice-chars when generated) and released with the generation.
 * - ICE-TCP (RFC 6544, gatherer option `transports: ["udp", "tcp"]`): TCP host candidates, passive (listening) and
 *   active (port 9); remote TCP candidates are accepted when the agent gathers TCP. A check on an active local
 *   candidate first opens the connection (`Base.prepare`); a passive local candidate never checks an active remote
 *   one (the pair fails at once: only the peer can connect, §6.2); a request arriving on an accepted connection
 *   teaches a peer-reflexive active remote candidate whose pair is checked back over that connection. Checks and
 *   data are RFC 4571-framed on the connection.
 * - mDNS host candidates (draft-ietf-mmusic-mdns-ice-candidates, the `mdns` option with an `Mdns` engine): with
 *   `publish`, each host candidate is signalled as the `<uuid>.local` name the engine registers for its IP (§3.1.1,
 *   one name per IP), and server-reflexive and relayed ones with `raddr 0.0.0.0 rport 0` (as Chrome and Firefox do);
 *   the checklist keeps the real addresses. A remote `.local` candidate (§3.2.1) is resolved in a fiber of its
 *   generation (one resolution per name, at most {@link maxConcurrentMdnsResolutions} at once) and then added with
 *   the IP; one that does not resolve, or arrives at an agent without an engine, is dropped and logged as an
 *   {@link MdnsCandidateDropped} (`droppedCandidates`). End-of-candidates counts only once no name is pending, so
 *   the agent does not fail while a resolution may still give it a pair. The option lives on the agent, not the
 *   gatherer: the gatherer's candidates are the real ones, and only what is signalled is hidden.
 *
 * Closing the agent's scope interrupts every fiber, closes every socket and releases every TURN allocation.
 *
 * @since 0.1.0
 */
import {
  Context,
  Data,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  FiberHandle,
  FiberMap,
  FiberSet,
  Mailbox,
  Option,
  Random,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as IceCandidate from "./IceCandidate.js"
import * as IceChecklist from "./IceChecklist.js"
import * as IceGatherer from "./IceGatherer.js"
import type * as IceUdpMux from "./IceUdpMux.js"
import type * as Mdns from "./Mdns.js"
import * as Metrics from "./Metrics.js"
import type * as Network from "./Network.js"
import * as PacketDemux from "./PacketDemux.js"
import * as StunAttribute from "./StunAttribute.js"
import * as StunIntegrity from "./StunIntegrity.js"
import type { DecodedStunMessage } from "./StunMessage.js"
import * as StunMessage from "./StunMessage.js"
import * as StunTransaction from "./StunTransaction.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"

// ---------------------------------------------------------------------------------------------------------------
// Tunables
// ---------------------------------------------------------------------------------------------------------------

/**
 * Ta, the pacing of checks (RFC 8445 §14.2): one check starts every 50 ms by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class Ta extends Context.Reference<Ta>()("effect-ice/IceAgent/Ta", {
  defaultValue: (): Duration.Duration => Duration.millis(50)
}) {}

/**
 * How long the controlling agent waits after the first valid pair for a better one before nominating (RFC 8445
 * §8.1.1 leaves it to the agent): 1 s by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class NominationDelay extends Context.Reference<NominationDelay>()("effect-ice/IceAgent/NominationDelay", {
  defaultValue: (): Duration.Duration => Duration.seconds(1)
}) {}

/**
 * Tr, the keepalive interval (RFC 8445 §11): 15 s by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class KeepaliveInterval extends Context.Reference<KeepaliveInterval>()(
  "effect-ice/IceAgent/KeepaliveInterval",
  { defaultValue: (): Duration.Duration => Duration.seconds(15) }
) {}

/**
 * The mean interval of consent checks (RFC 7675 §5.1: 5 s, randomized to 4–6 s): 5 s by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class ConsentInterval extends Context.Reference<ConsentInterval>()("effect-ice/IceAgent/ConsentInterval", {
  defaultValue: (): Duration.Duration => Duration.seconds(5)
}) {}

/**
 * How long consent lasts without an answer (RFC 7675 §5.1: 30 s).
 *
 * @since 0.1.0
 * @category tunables
 */
export class ConsentExpiry extends Context.Reference<ConsentExpiry>()("effect-ice/IceAgent/ConsentExpiry", {
  defaultValue: (): Duration.Duration => Duration.seconds(30)
}) {}

/**
 * The most peer-reflexive remote candidates one generation learns from requests on one base (RFC 8445 §7.3.1.3); a
 * request from yet another unknown address is still answered, but forms no pair.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxPeerReflexive = 8

// ---------------------------------------------------------------------------------------------------------------
// Models and errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * The agent's state, named as `RTCIceTransportState`.
 *
 * @since 0.1.0
 * @category models
 */
export type State = "new" | "checking" | "connected" | "completed" | "disconnected" | "failed" | "closed"

/**
 * The agent's role (RFC 8445 §6.1.1).
 *
 * @since 0.1.0
 * @category models
 */
export type Role = "controlling" | "controlled"

/**
 * ICE credentials: username fragment and password (RFC 8445 §5.3).
 *
 * @since 0.1.0
 * @category models
 */
export interface Credentials {
  readonly ufrag: string
  readonly pwd: string
}

/**
 * What the agent tells its peer, in order (trickle ICE, RFC 8838): the credentials of a generation, then its
 * candidates, then end-of-candidates. A restart starts a new generation with new credentials.
 *
 * @since 0.1.0
 * @category models
 */
export type LocalEvent =
  | {
    readonly _tag: "Credentials"
    readonly credentials: Credentials
    /** The agent is an ICE-lite implementation (RFC 8445 §2.5; `a=ice-lite` in SDP, RFC 8839 §5.3). */
    readonly lite?: boolean | undefined
  }
  | { readonly _tag: "Candidate"; readonly candidate: IceCandidate.Candidate; readonly ufrag: string }
  | { readonly _tag: "EndOfCandidates"; readonly ufrag: string }

/**
 * The selected pair, as the agent reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SelectedPair {
  readonly id: string
  /**
   * The local candidate the peer sees: the one whose address the check's XOR-MAPPED-ADDRESS named (a
   * server-reflexive candidate rather than its base, a peer-reflexive one when it was learnt), else the pair's.
   */
  readonly local: IceCandidate.Candidate
  readonly remote: IceCandidate.Candidate
}

/**
 * One pair of a failed checklist and why it failed.
 *
 * @since 0.1.0
 * @category models
 */
export interface PairFailure {
  /** `type ip:port` of the local candidate. */
  readonly local: string
  /** `type ip:port` of the remote candidate. */
  readonly remote: string
  /** "timeout", an error code and phrase ("401 Unauthorized", "487 Role Conflict"), "unreachable", a TURN error… */
  readonly reason: string
}

/**
 * Every candidate pair failed (or none could be formed) after gathering completed and the remote's candidates
 * ended, or the agent's `failAfter` passed without a selected pair.
 *
 * @since 0.1.0
 * @category errors
 */
export class IceFailed extends Data.TaggedError("IceFailed")<{
  readonly pairs: ReadonlyArray<PairFailure>
  readonly reason: "AllPairsFailed" | "Timeout"
}> {
  override get message(): string {
    if (this.pairs.length === 0) return `ICE failed (${this.reason}): no candidate pairs`
    return `ICE failed (${this.reason}): ${this.pairs.map((p) => `${p.local} -> ${p.remote}: ${p.reason}`).join("; ")}`
  }
}

/**
 * Consent to send on the selected pair expired (RFC 7675 §5.1): no answer to consent checks for 30 s.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConsentExpired extends Data.TaggedError("ConsentExpired")<{
  readonly pair: string
  readonly lastConsentAt: number
}> {
  override get message(): string {
    return `consent expired on ${this.pair} (last consent at ${this.lastConsentAt} ms)`
  }
}

/**
 * `send` was called while no pair is selected.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotConnected extends Data.TaggedError("NotConnected")<{ readonly state: State }> {
  override get message(): string {
    return `ICE agent not connected (state ${this.state})`
  }
}

/**
 * Credentials that do not follow RFC 8445 §5.3 (ice-chars; ufrag of 4 to 256, password of 22 to 256).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidCredentials extends Data.TaggedError("InvalidCredentials")<{ readonly reason: string }> {
  override get message(): string {
    return `invalid ICE credentials: ${this.reason}`
  }
}

/**
 * How to run an agent: the gatherer's options and the agent's own.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends IceGatherer.Options {
  /** The initial role (default controlling when `controlling` is not given). */
  readonly role?: Role | undefined
  /** The initial role as a flag (`role` wins). */
  readonly controlling?: boolean | undefined
  /** Local credentials (default: random, RFC 8445 §5.3). */
  readonly ufrag?: string | undefined
  readonly pwd?: string | undefined
  /** The tie-breaker (default: 64 random bits). */
  readonly tieBreaker?: bigint | undefined
  /** Fail with {@link IceFailed} if no pair is selected this long after start (default: never, only by pairs). */
  readonly failAfter?: Duration.DurationInput | undefined
  /** Run consent freshness on the selected pair (default true). */
  readonly consent?: boolean | undefined
  /** How many inbound packets `data` buffers (default 1024; more are dropped). */
  readonly dataCapacity?: number | undefined
  /** The most pairs of a checklist (default 100). */
  readonly maxPairs?: number | undefined
  /**
   * Run as an ICE-lite agent (RFC 8445 §2.5): host candidates only, always controlled (§6.1.1), no checks of its
   * own; it answers checks (§7.3), and the pair the full peer nominates with USE-CANDIDATE is selected (§8.2).
   */
  readonly lite?: boolean | undefined
  /**
   * Gather on a shared UDP socket ({@link IceUdpMux.IceUdpMux}) instead of binding host sockets: the mux's socket is
   * the agent's only host base (server-reflexive and relayed candidates are gathered as usual).
   */
  readonly mux?: IceUdpMux.IceUdpMux | undefined
  /**
   * mDNS host-candidate names (draft-ietf-mmusic-mdns-ice-candidates): with `service`, the peer's `<uuid>.local`
   * candidates are resolved (§3.2.1) before they are paired; with `publish` too, each host candidate is signalled
   * under the `<uuid>.local` name registered for its IP (one name per IP, §3.1.1) and server-reflexive and relayed
   * candidates are signalled with `raddr 0.0.0.0 rport 0`, as browsers do. The agent pairs and checks with the real
   * addresses. Without it, remote `.local` candidates are dropped (`NoResolver`).
   */
  readonly mdns?: MdnsOptions | undefined
}

/**
 * The mDNS side of an agent: the engine, and whether to publish our host candidates under its names.
 *
 * @since 0.1.0
 * @category models
 */
export interface MdnsOptions {
  readonly service: Mdns.Service
  /** Signal host candidates as `<uuid>.local` names (default false: resolve the peer's only). */
  readonly publish?: boolean | undefined
}

/**
 * The most mDNS names an agent resolves at once; more wait for a slot.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxConcurrentMdnsResolutions = 8

/**
 * A remote `.local` candidate the agent dropped: no mDNS service (`NoResolver`), or the name did not resolve
 * (`Timeout`, `InvalidName`, from `Mdns.MdnsResolveError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class MdnsCandidateDropped extends Data.TaggedError("MdnsCandidateDropped")<{
  readonly reason: "NoResolver" | "Timeout" | "InvalidName"
  readonly name: string
  readonly candidate: string
}> {
  override get message(): string {
    return `mDNS candidate ${this.candidate} dropped (${this.reason})`
  }
}

/**
 * What the agent knows of the remote agent besides its credentials.
 *
 * @since 0.1.0
 * @category models
 */
export interface RemoteOptions {
  /**
   * The remote agent is ICE-lite (`a=ice-lite`, RFC 8839 §5.3): a full agent takes the controlling role (RFC 8445
   * §6.1.1) for this and every later generation.
   */
  readonly lite?: boolean | undefined
}

/**
 * Counters for tests and benchmarks.
 *
 * @since 0.1.0
 * @category models
 */
export interface AgentStats {
  /** Connectivity checks started (ordinary, triggered, nomination), not counting retransmissions. */
  readonly checksSent: number
  /** Checks answered with a success. */
  readonly checksAnswered: number
  /** Consent checks sent. */
  readonly consentChecks: number
  /** Keepalive indications sent. */
  readonly keepalives: number
  /** When the first pair was selected (ms on the agent's clock, from its start), if one was. */
  readonly connectedAfterMs: number | undefined
}

/**
 * A running agent.
 *
 * @since 0.1.0
 * @category models
 */
export interface IceAgent {
  /** The current local credentials (they change on restart). */
  readonly localCredentials: Effect.Effect<Credentials>
  /** The current role. */
  readonly role: Effect.Effect<Role>
  readonly tieBreaker: bigint
  /** This agent is ICE-lite (the `lite` option). */
  readonly lite: boolean
  /**
   * Sets the remote credentials; different ones from those known start a restart (RFC 8445 §9). With `lite`, the
   * remote agent is ICE-lite: a full agent becomes controlling (RFC 8445 §6.1.1).
   */
  readonly addRemoteCredentials: (
    credentials: Credentials,
    options?: RemoteOptions
  ) => Effect.Effect<void, InvalidCredentials>
  /**
   * Adds a remote candidate (trickle). With `ufrag`, a candidate of another generation than the current remote one
   * is ignored (one of a generation whose credentials have not arrived yet is kept until they do).
   */
  readonly addRemoteCandidate: (candidate: IceCandidate.Candidate, ufrag?: string) => Effect.Effect<void>
  /** The remote sent end-of-candidates. */
  readonly endOfRemoteCandidates: Effect.Effect<void>
  /** Applies one of the peer's {@link LocalEvent}s (signalling made easy: pipe one agent's events to the other). */
  readonly receive: (event: LocalEvent) => Effect.Effect<void, InvalidCredentials>
  /** Credentials, candidates and end-of-candidates of every generation, from the first (replayed). Never ends. */
  readonly localCandidates: Stream.Stream<LocalEvent>
  /** The current generation's gathering state. */
  readonly gatheringState: Effect.Effect<IceGatherer.GatheringState>
  readonly state: SubscriptionRef.SubscriptionRef<State>
  readonly selectedPair: SubscriptionRef.SubscriptionRef<Option.Option<SelectedPair>>
  /** Waits for `connected` or `completed` and returns the selected pair; fails if the agent fails first. */
  readonly connected: Effect.Effect<SelectedPair, IceFailed | ConsentExpired>
  /** The error the agent failed with, if it did. */
  readonly failure: Effect.Effect<Option.Option<IceFailed | ConsentExpired>>
  /** The remote `.local` candidates dropped so far (every generation), and why. */
  readonly droppedCandidates: Effect.Effect<ReadonlyArray<MdnsCandidateDropped>>
  /** The current checklist's pairs (for inspection). */
  readonly pairs: Effect.Effect<ReadonlyArray<IceChecklist.Pair>>
  /** Sends application data on the selected pair. */
  readonly send: (data: Uint8Array) => Effect.Effect<void, NotConnected | ConsentExpired | Network.NetworkError>
  /**
   * Application data (non-STUN packets, RFC 7983) from the peer, on any pair, across restarts; one queue, so each
   * packet goes to one reader. Ends when the agent closes.
   */
  readonly data: Stream.Stream<Uint8Array>
  /** ICE restart (RFC 8445 §9): new credentials (returned), new gathering, new checks. */
  readonly restart: Effect.Effect<Credentials>
  readonly stats: Effect.Effect<AgentStats>
}

// ---------------------------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------------------------

/**
 * The ice-char alphabet (RFC 8445 §15.1 / RFC 8839 §5.4: ALPHA / DIGIT / "+" / "/").
 *
 * @since 0.1.0
 * @category constants
 */
export const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

const iceCharsPattern = /^[A-Za-z0-9+/]+$/

const randomString = (length: number): Effect.Effect<string> =>
  Effect.gen(function*() {
    let out = ""
    for (let i = 0; i < length; i++) out += iceChars[yield* Random.nextIntBetween(0, iceChars.length)]
    return out
  })

/**
 * Fresh credentials from `Random`: a ufrag of 4 ice-chars (24 bits) and a password of 22 (132 bits), the minimum
 * lengths of RFC 8445 §5.3.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateCredentials: Effect.Effect<Credentials> = Effect.all({
  ufrag: randomString(4),
  pwd: randomString(22)
})

/**
 * A 64-bit tie-breaker from `Random` (RFC 8445 §16.1).
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateTieBreaker: Effect.Effect<bigint> = Effect.map(
  Effect.all([Random.nextIntBetween(0, 0x10000_0000), Random.nextIntBetween(0, 0x10000_0000)]),
  ([high, low]) => (BigInt(high) << 32n) | BigInt(low)
)

/**
 * Checks credentials against RFC 8445 §5.3 (ice-chars; ufrag 4–256 characters, password 22–256).
 *
 * @since 0.1.0
 * @category guards
 */
export const validateCredentials = (credentials: Credentials): Option.Option<InvalidCredentials> => {
  const { pwd, ufrag } = credentials
  if (ufrag.length < 4 || ufrag.length > 256 || !iceCharsPattern.test(ufrag)) {
    return Option.some(new InvalidCredentials({ reason: `ufrag ${JSON.stringify(ufrag)}` }))
  }
  if (pwd.length < 22 || pwd.length > 256 || !iceCharsPattern.test(pwd)) {
    return Option.some(new InvalidCredentials({ reason: "password length or characters" }))
  }
  return Option.none()
}

/**
 * `type ip:port` of a candidate, as failures and logs show it.
 *
 * @since 0.1.0
 * @category combinators
 */
export const describeCandidate = (candidate: IceCandidate.Candidate): string =>
  `${candidate.type} ${
    candidate.address.includes(":") ? `[${candidate.address}]` : candidate.address
  }:${candidate.port}`

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

interface Triggered {
  readonly id: string
  readonly useCandidate: boolean
}

interface Generation {
  readonly local: Credentials
  readonly localKey: StunIntegrity.IntegrityKey
  remote: Credentials | undefined
  remoteKey: StunIntegrity.IntegrityKey | undefined
  remoteEnd: boolean
  gatheringComplete: boolean
  gatheringState: IceGatherer.GatheringState
  list: IceChecklist.Checklist
  readonly scope: Scope.CloseableScope
  readonly bases: Map<string, IceGatherer.Base>
  /** The base's own candidate (host or relay), by base key. */
  readonly baseLocal: Map<string, IceChecklist.LocalCandidate>
  /** Every local candidate, peer-reflexive ones included. */
  readonly locals: Array<IceChecklist.LocalCandidate>
  /** Remote candidates by `ip|port`. */
  readonly remotes: Map<string, IceCandidate.Candidate>
  /** Candidates that came with a ufrag before that ufrag's credentials. */
  readonly pending: Array<{ readonly candidate: IceCandidate.Candidate; readonly ufrag: string }>
  /** Remote `.local` candidates waiting on a resolution, by lower-cased name. */
  readonly resolving: Map<string, Array<IceCandidate.Candidate>>
  readonly triggered: Array<Triggered>
  readonly validOf: Map<string, string>
  /** The local candidate whose address a valid pair's check was answered with (a srflx, not its base). */
  readonly validLocal: Map<string, IceCandidate.Candidate>
  readonly nominateOnSuccess: Set<string>
  nominating: string | undefined
  /** Peer-reflexive remote candidates learnt so far, by the base they were learnt on. */
  readonly learnt: Map<string, number>
  firstValidAt: number | undefined
  started: boolean
  done: boolean
  /** A failed restart was reported (while the old pair carries on). */
  reported: boolean
  checks: FiberMap.FiberMap<string> | undefined
}

interface Route {
  readonly gen: Generation
  readonly pair: IceChecklist.Pair
  readonly base: IceGatherer.Base
  readonly remote: SocketAddress
  lastSent: number
  lastConsent: number
  answered: boolean
  expired: boolean
}

/** A remote candidate's key: its address, and `tcp|` before it for an ICE-TCP one. */
const remoteKey = (transport: IceCandidate.CandidateTransport | undefined, ip: string, port: number) =>
  transport === "tcp" ? `tcp|${ip}|${port}` : `${ip}|${port}`
/** The kind a peer's candidate has, seen from a local TCP base of this kind (RFC 6544 §7.2). */
const oppositeTcpType = (tcpType: IceCandidate.TcpType | undefined): IceCandidate.TcpType =>
  tcpType === "passive" ? "active" : tcpType === "active" ? "passive" : "so"

const ordinaryLabels = [Metrics.label("kind", "ordinary")]
const triggeredLabels = [Metrics.label("kind", "triggered")]
const nominationLabels = [Metrics.label("kind", "nomination")]
const consentLabels = [Metrics.label("kind", "consent")]
const answeredSuccess = [Metrics.label("result", "success")]
const answered400 = [Metrics.label("result", "400")]
const answered401 = [Metrics.label("result", "401")]
const answered487 = [Metrics.label("result", "487")]

const remoteAddress = (candidate: IceCandidate.Candidate): SocketAddress => ({
  family: candidate.address.includes(":") ? "IPv6" : "IPv4",
  ip: candidate.address,
  port: candidate.port
})

const view = (pair: IceChecklist.Pair, mapped: IceCandidate.Candidate | undefined): SelectedPair => ({
  id: pair.id,
  local: mapped ?? pair.local.candidate,
  remote: pair.remote
})

const failureOf = (error: StunTransaction.StunTransactionError | { readonly _tag: string }): string => {
  switch (error._tag) {
    case "StunTimeout":
      return "timeout"
    case "StunErrorResponse": {
      const e = error as StunTransaction.StunErrorResponse
      return `${e.code} ${e.reason}`
    }
    case "NetworkError":
      return "unreachable"
    default:
      return error._tag
  }
}

const keyOf = (password: string): StunIntegrity.IntegrityKey => {
  const key = StunIntegrity.shortTermKey(password)
  // Validated credentials are printable ASCII: OpaqueString preparation cannot fail on them.
  return key._tag === "Right" ? key.right : new StunIntegrity.IntegrityKey(new TextEncoder().encode(password))
}

/**
 * Starts an agent in the caller's scope: gathering begins at once, checks as soon as remote credentials and
 * candidates arrive. Closing the scope closes the agent (state `closed`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<IceAgent, InvalidCredentials, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const agentScope = yield* Effect.scope
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const startedAt = now()
    const ta = yield* Ta
    const nominationDelay = Duration.toMillis(yield* NominationDelay)
    const keepaliveMs = Duration.toMillis(yield* KeepaliveInterval)
    const consentMs = Duration.toMillis(yield* ConsentInterval)
    const consentExpiryMs = Duration.toMillis(yield* ConsentExpiry)
    const component = options.component ?? 1
    const context = yield* Effect.context<Network.Network>()

    const lite = options.lite === true
    const tcpEnabled = (options.transports ?? ["udp"]).includes("tcp")
    // On a mux the ufrag is the routing key: 8 ice-chars (48 bits) keep thousands of agents apart.
    const newCredentials = options.mux === undefined
      ? generateCredentials
      : Effect.all({ ufrag: randomString(8), pwd: randomString(22) })
    // §6.1.1: a lite agent is always controlled (both lite is left to the application: neither checks).
    let controlling = lite
      ? false
      : options.role !== undefined
      ? options.role === "controlling"
      : options.controlling ?? true
    let remoteLite = false
    const tieBreaker = options.tieBreaker ?? (yield* generateTieBreaker)
    const firstCredentials = options.ufrag !== undefined && options.pwd !== undefined
      ? { ufrag: options.ufrag, pwd: options.pwd }
      : yield* newCredentials
    const invalid = validateCredentials(firstCredentials)
    if (Option.isSome(invalid)) return yield* Effect.fail(invalid.value)

    const state = yield* SubscriptionRef.make<State>("new")
    const selectedPair = yield* SubscriptionRef.make<Option.Option<SelectedPair>>(Option.none())
    const events = yield* SubscriptionRef.make<ReadonlyArray<LocalEvent>>([])
    const mailbox = yield* Mailbox.make<Uint8Array>({ capacity: options.dataCapacity ?? 1024, strategy: "dropping" })
    const routeHandle = yield* FiberHandle.make<void, never>()
    /** Control-plane work that must not run in (and be interrupted with) the fiber that starts it. */
    const background = yield* FiberSet.make<void, never>()
    let failure: IceFailed | ConsentExpired | undefined
    const droppedCandidates: Array<MdnsCandidateDropped> = []
    const mdnsSlots = yield* Effect.makeSemaphore(maxConcurrentMdnsResolutions)
    let closed = false
    let route: Route | undefined
    let current: Generation
    let previous: Generation | undefined
    const counters = { checksSent: 0, checksAnswered: 0, consentChecks: 0, keepalives: 0 }
    let connectedAt: number | undefined
    const pacing = yield* Effect.makeLatch(true)
    const wake = () => pacing.unsafeOpen()
    const taMillis = Duration.toMillis(ta)
    let lastSlot = Number.NEGATIVE_INFINITY

    const emit = (event: LocalEvent) => SubscriptionRef.update(events, (all) => [...all, event])

    const setState = (next: State): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed && next !== "closed") return Effect.void
        return Effect.flatMap(SubscriptionRef.get(state), (s) =>
          s === next ? Effect.void : Effect.zipRight(
            SubscriptionRef.set(state, next),
            Effect.suspend(() => {
              Metrics.increment(Metrics.iceStateChanges, [Metrics.label("state", next)])
              return Effect.logDebug(`ICE agent: ${s} -> ${next}`)
            })
          ))
      })

    const failWith = (error: IceFailed | ConsentExpired): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (failure !== undefined || closed) return Effect.void
        failure = error
        // Failed is final until a restart: no more checks in this generation (answers to the peer's still go out).
        const checks = current.checks
        return Effect.zipRight(
          Effect.zipRight(Effect.logWarning(error.message), setState("failed")),
          checks === undefined ? Effect.void : FiberSet.run(background, FiberMap.clear(checks))
        )
      })

    // -------------------------------------------------------------------------------------------------------------
    // Checklist changes and state
    // -------------------------------------------------------------------------------------------------------------

    const failPair = (g: Generation, id: string, reason: string) => {
      g.list = IceChecklist.setState(g.list, id, "failed", reason)
      if (g.nominating === id) g.nominating = undefined
    }

    /** The remote side is done: end-of-candidates came and no `.local` name is still being resolved. */
    const remoteDone = (g: Generation) => g.remoteEnd && g.resolving.size === 0

    const connectedState = (g: Generation): State => g.gatheringComplete && remoteDone(g) ? "completed" : "connected"

    const pairFailures = (g: Generation): Array<PairFailure> =>
      g.list.pairs.map((p) => ({
        local: describeCandidate(p.local.candidate),
        remote: describeCandidate(p.remote),
        reason: p.failure ?? (p.state === "failed" ? "failed" : `still ${p.state}`)
      }))

    const select = (g: Generation, pair: IceChecklist.Pair): Effect.Effect<void> =>
      Effect.gen(function*() {
        const base = g.bases.get(pair.local.baseKey)
        if (base === undefined) return
        const at = now()
        const next: Route = {
          gen: g,
          pair,
          base,
          remote: remoteAddress(pair.remote),
          lastSent: at,
          lastConsent: at,
          answered: true,
          expired: false
        }
        route = next
        connectedAt ??= at - startedAt
        yield* Effect.logDebug(`ICE agent: selected ${pair.id}`)
        yield* SubscriptionRef.set(selectedPair, Option.some(view(pair, g.validLocal.get(pair.id))))
        yield* FiberHandle.run(routeHandle, maintain(next))
        // A restart has succeeded: release the old generation (in the background: TURN releases take a round trip).
        const old = previous
        if (old !== undefined && old !== g) {
          previous = undefined
          old.done = true
          yield* FiberSet.run(background, Scope.close(old.scope, Exit.void))
        }
      })

    const refresh = (g: Generation): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (closed || g.done || g !== current || failure !== undefined) return Effect.void
        wake()
        g.list = IceChecklist.updateState(g.list, {
          gatheringComplete: g.gatheringComplete,
          remoteEndOfCandidates: remoteDone(g)
        })
        const chosen = IceChecklist.selected(g.list)
        if (Option.isSome(chosen)) {
          const isNew = route === undefined || route.gen !== g || route.pair.id !== chosen.value.id
          return Effect.zipRight(
            isNew ? select(g, chosen.value) : Effect.void,
            Effect.suspend(() =>
              route !== undefined && route.gen === g && route.answered && !route.expired
                ? setState(connectedState(g))
                : Effect.void
            )
          )
        }
        if (g.list.state === "failed" && (route === undefined || route.gen !== g)) {
          const error = new IceFailed({ pairs: pairFailures(g), reason: "AllPairsFailed" })
          if (route === undefined || route.expired) return failWith(error)
          // A restart found nothing, but the old pair still has consent: keep it, and say so once.
          if (g.reported) return Effect.void
          g.reported = true
          return Effect.logWarning(`ICE restart found no pair; keeping ${route.pair.id}: ${error.message}`)
        }
        if (g.started && route === undefined) {
          return Effect.flatMap(SubscriptionRef.get(state), (s) => s === "new" ? setState("checking") : Effect.void)
        }
        return Effect.void
      })

    // -------------------------------------------------------------------------------------------------------------
    // Checks
    // -------------------------------------------------------------------------------------------------------------

    const roleAttribute = (isControlling: boolean) =>
      isControlling ? StunAttribute.iceControlling(tieBreaker) : StunAttribute.iceControlled(tieBreaker)

    const prflxPriority = (local: IceCandidate.Candidate) =>
      IceCandidate.priority({
        type: "prflx",
        component: local.component,
        localPreference: (local.priority >>> 8) & 0xffff
      })

    const switchRole = (toControlling: boolean) => {
      if (controlling === toControlling) return
      controlling = toControlling
      current.list = IceChecklist.setControlling(current.list, toControlling)
      if (!toControlling) current.nominating = undefined
    }

    const runCheck = (
      g: Generation,
      pair: IceChecklist.Pair,
      useCandidate: boolean,
      triggered: boolean
    ): Effect.Effect<void> =>
      Effect.gen(function*() {
        const base = g.bases.get(pair.local.baseKey)
        const remote = g.remote
        const remoteKey = g.remoteKey
        if (base === undefined || remote === undefined || remoteKey === undefined) {
          failPair(g, pair.id, "no base")
          return yield* refresh(g)
        }
        const target = remoteAddress(pair.remote)
        const prepared = yield* Effect.either(base.prepare(target))
        if (prepared._tag === "Left") {
          failPair(
            g,
            pair.id,
            base.tcpType === "passive"
              ? "passive: the peer has not connected, RFC 6544 §6.2"
              : base.transport === "tcp"
              ? `TCP: ${prepared.left.message}`
              : `TURN: ${prepared.left.message}`
          )
          return yield* refresh(g)
        }
        const sentControlling = controlling
        const nominating = useCandidate && sentControlling
        counters.checksSent++
        Metrics.increment(
          Metrics.iceChecks,
          nominating ? nominationLabels : triggered ? triggeredLabels : ordinaryLabels
        )
        const result = yield* Effect.either(base.client.request(target, {
          method: StunMessage.StunMethod.Binding,
          attributes: [
            StunAttribute.priority(prflxPriority(pair.local.candidate)),
            roleAttribute(sentControlling),
            ...(nominating ? [StunAttribute.useCandidate] : [])
          ]
        }, { credentials: StunTransaction.shortTerm(`${remote.ufrag}:${g.local.ufrag}`, remoteKey) }))
        if (g.done || closed) return
        if (result._tag === "Left") {
          const error = result.left
          if (error._tag === "StunErrorResponse" && error.code === 487) {
            // §7.2.5.1: switch to the role opposite to the one the request carried, then retry.
            switchRole(!sentControlling)
            g.list = IceChecklist.setState(g.list, pair.id, "waiting")
            if (g.nominating === pair.id) g.nominating = undefined
            g.triggered.push({ id: pair.id, useCandidate: false })
          } else {
            failPair(g, pair.id, failureOf(error))
          }
          return yield* refresh(g)
        }
        const response = result.right
        if (!TransportAddress.equals(response.from, target)) {
          failPair(
            g,
            pair.id,
            `asymmetric: answer from ${TransportAddress.format(response.from)} (§7.2.5.2.1)`
          )
          return yield* refresh(g)
        }
        const mapped = StunMessage.find(response.message, "XorMappedAddress")?.address
        if (mapped === undefined) {
          failPair(g, pair.id, "no XOR-MAPPED-ADDRESS")
          return yield* refresh(g)
        }
        let validLocal = g.locals.find((l) =>
          l.baseKey === pair.local.baseKey && l.candidate.address === mapped.ip && l.candidate.port === mapped.port
        )
        if (validLocal === undefined) {
          // §7.2.5.3.1: a peer-reflexive local candidate, with the priority the check carried.
          const candidate = IceCandidate.make({
            type: "prflx",
            address: mapped.ip,
            port: mapped.port,
            component: pair.local.candidate.component,
            priority: prflxPriority(pair.local.candidate),
            baseAddress: pair.local.base.address,
            relatedAddress: pair.local.base.address,
            relatedPort: pair.local.base.port,
            ...(pair.local.candidate.transport === "tcp"
              ? { transport: "tcp", tcpType: pair.local.candidate.tcpType }
              : {})
          })
          validLocal = { candidate, baseKey: pair.local.baseKey, base: pair.local.base }
          g.locals.push(validLocal)
        }
        g.list = IceChecklist.setState(g.list, pair.id, "succeeded")
        const nominated = nominating || (!controlling && g.nominateOnSuccess.has(pair.id))
        const [list, validId] = IceChecklist.addValid(g.list, validLocal, pair.remote, { nominated })
        g.list = nominated ? IceChecklist.nominate(list, validId) : list
        g.validOf.set(pair.id, validId)
        g.validLocal.set(validId, validLocal.candidate)
        g.firstValidAt ??= now()
        if (nominating && g.nominating === pair.id) g.nominating = undefined
        yield* refresh(g)
      })

    const startCheck = (
      g: Generation,
      pair: IceChecklist.Pair,
      useCandidate: boolean,
      triggered: boolean
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (g.checks === undefined) return Effect.void
        g.list = IceChecklist.setState(g.list, pair.id, "in-progress")
        g.started = true
        return Effect.zipRight(FiberMap.run(g.checks, pair.id, runCheck(g, pair, useCandidate, triggered)), refresh(g))
      })

    const maybeNominate = (g: Generation) => {
      if (!controlling || g.nominating !== undefined) return
      if (route !== undefined && route.gen === g) return
      const valid = IceChecklist.validPairs(g.list)
      const best = valid[0]
      if (best === undefined) return
      const betterPending = g.list.pairs.some((p) =>
        p.priority > best.priority && (p.state === "waiting" || p.state === "in-progress" || p.state === "frozen")
      )
      if (betterPending && now() - (g.firstValidAt ?? now()) < nominationDelay) return
      g.nominating = best.id
      g.triggered.unshift({ id: best.id, useCandidate: true })
    }

    /**
     * One pacing slot (§6.1.4.2): a triggered check if one is queued, else an ordinary one. Tells whether the
     * pacing loop has more to do (a check was started, or a nomination is waiting for its timer).
     */
    const tick: Effect.Effect<boolean> = Effect.suspend(() => {
      const g = current
      if (lite || closed || g.done || g.remote === undefined || failure !== undefined) return Effect.succeed(false)
      maybeNominate(g)
      while (g.triggered.length > 0) {
        const next = g.triggered.shift()!
        const pair = IceChecklist.find(g.list, next.id)
        if (Option.isSome(pair) && pair.value.state !== "in-progress") {
          return Effect.as(startCheck(g, pair.value, next.useCandidate, true), true)
        }
      }
      const selectedHere = route !== undefined && route.gen === g
      if (!selectedHere && g.list.state === "running") {
        const ordinary = IceChecklist.nextOrdinary(g.list)
        if (Option.isSome(ordinary)) return Effect.as(startCheck(g, ordinary.value, false, false), true)
      }
      const nominationDue = controlling && !selectedHere && g.nominating === undefined &&
        IceChecklist.validPairs(g.list).length > 0
      return Effect.succeed(nominationDue)
    })

    // -------------------------------------------------------------------------------------------------------------
    // Answering checks (§7.3)
    // -------------------------------------------------------------------------------------------------------------

    const answer = (
      base: IceGatherer.Base,
      request: DecodedStunMessage,
      to: SocketAddress,
      attributes: ReadonlyArray<StunAttribute.StunAttribute>,
      key: StunIntegrity.IntegrityKey | undefined,
      error: boolean
    ) => {
      const bytes = StunMessage.encode(
        StunMessage.make(
          error ? StunMessage.StunClass.ErrorResponse : StunMessage.StunClass.SuccessResponse,
          request.method,
          request.transactionId,
          attributes
        ),
        { integrity: key, fingerprint: true }
      )
      if (bytes._tag === "Right") base.unsafeSend(bytes.right, to)
    }

    const onRequest = (g: Generation, base: IceGatherer.Base) =>
    (
      message: DecodedStunMessage,
      from: SocketAddress
    ): Effect.Effect<void> | void => {
      if (message.method !== StunMessage.StunMethod.Binding || closed) return
      if (message.fingerprintOffset >= 0 && !StunIntegrity.verifyFingerprint(message)) return
      const username = StunMessage.find(message, "Username")?.value
      if (username === undefined || message.integrityOffset < 0) {
        Metrics.increment(Metrics.iceChecksAnswered, answered400)
        return answer(base, message, from, [StunAttribute.errorCode(400, "Bad Request")], undefined, true)
      }
      const colon = username.indexOf(":")
      if (
        colon < 0 || username.slice(0, colon) !== g.local.ufrag ||
        StunIntegrity.verify(message, g.localKey)._tag === "Left"
      ) {
        Metrics.increment(Metrics.iceChecksAnswered, answered401)
        return answer(base, message, from, [StunAttribute.errorCode(401, "Unauthorized")], undefined, true)
      }
      const priority = StunMessage.find(message, "Priority")?.value
      if (priority === undefined) {
        Metrics.increment(Metrics.iceChecksAnswered, answered400)
        return answer(base, message, from, [StunAttribute.errorCode(400, "Bad Request")], g.localKey, true)
      }
      // §7.3.1.1 role conflict.
      const theirControlling = StunMessage.find(message, "IceControlling")
      const theirControlled = StunMessage.find(message, "IceControlled")
      if (controlling && theirControlling !== undefined) {
        if (tieBreaker >= theirControlling.tieBreaker) {
          Metrics.increment(Metrics.iceChecksAnswered, answered487)
          return answer(base, message, from, [StunAttribute.errorCode(487, "Role Conflict")], g.localKey, true)
        }
        switchRole(false)
      } else if (!controlling && theirControlled !== undefined) {
        // A lite agent never takes the controlling role (§6.1.1): the full peer must.
        if (!lite && tieBreaker >= theirControlled.tieBreaker) {
          switchRole(true)
        } else {
          Metrics.increment(Metrics.iceChecksAnswered, answered487)
          return answer(base, message, from, [StunAttribute.errorCode(487, "Role Conflict")], g.localKey, true)
        }
      }
      answer(base, message, from, [StunAttribute.xorMappedAddress(from)], g.localKey, false)
      counters.checksAnswered++
      Metrics.increment(Metrics.iceChecksAnswered, answeredSuccess)
      if (g.done || g !== current) return
      // §7.3.1.3: a source we do not know is a peer-reflexive remote candidate.
      const fromKey = remoteKey(base.transport, from.ip, from.port)
      let remote = g.remotes.get(fromKey)
      if (remote === undefined) {
        // Two address-and-port-dependent mappings facing each other make a new mapping for every triggered check,
        // each of which the other side would learn and check again: a bounded number of learnt candidates keeps
        // that chain from crowding the relayed pairs out of the checklist.
        const learnt = g.learnt.get(base.key) ?? 0
        if (learnt >= maxPeerReflexive) return
        g.learnt.set(base.key, learnt + 1)
        remote = IceCandidate.make({
          type: "prflx",
          address: from.ip,
          port: from.port,
          component,
          priority,
          baseAddress: from.ip,
          ...(base.transport === "tcp" ? { transport: "tcp", tcpType: oppositeTcpType(base.tcpType) } : {})
        })
        g.remotes.set(fromKey, remote)
        g.list = IceChecklist.addRemote(g.list, remote)
      }
      const local = g.baseLocal.get(base.key)
      if (local === undefined) return refresh(g)
      const id = IceChecklist.pairId(local, remote)
      const pair = IceChecklist.find(g.list, id)
      if (Option.isNone(pair)) return refresh(g)
      const useCandidate = !controlling && StunMessage.has(message, "UseCandidate")
      if (lite) {
        // §7.3.2 (lite): no triggered check; the pair the request came on is valid, and nominated (so selected,
        // §8.2) when the request carried USE-CANDIDATE.
        let validId = g.validOf.get(id)
        if (validId === undefined) {
          g.list = IceChecklist.setState(g.list, id, "succeeded")
          const [list, added] = IceChecklist.addValid(g.list, local, remote, { nominated: useCandidate })
          g.list = list
          validId = added
          g.validOf.set(id, added)
          g.validLocal.set(added, local.candidate)
        }
        if (useCandidate) g.list = IceChecklist.nominate(g.list, validId)
        g.started = true
        g.firstValidAt ??= now()
        return refresh(g)
      }
      // §7.3.1.4 triggered check.
      const pairState = pair.value.state
      if (pairState === "succeeded") {
        if (useCandidate) g.list = IceChecklist.nominate(g.list, g.validOf.get(id) ?? id)
      } else {
        if (useCandidate) g.nominateOnSuccess.add(id)
        if (pairState !== "in-progress") {
          g.list = IceChecklist.setState(g.list, id, "waiting")
          if (!g.triggered.some((t) => t.id === id)) g.triggered.push({ id, useCandidate: false })
        }
      }
      return refresh(g)
    }

    const onOther = (g: Generation, base: IceGatherer.Base) => (data: Uint8Array, from: SocketAddress) => {
      if (PacketDemux.classifyPacket(data) === PacketDemux.PacketKind.Stun) return
      if (!g.remotes.has(remoteKey(base.transport, from.ip, from.port))) return
      mailbox.unsafeOffer(data)
    }

    // -------------------------------------------------------------------------------------------------------------
    // Selected pair upkeep: keepalives and consent (RFC 8445 §11, RFC 7675)
    // -------------------------------------------------------------------------------------------------------------

    const consentCheck = (r: Route): Effect.Effect<void> =>
      Effect.gen(function*() {
        const remote = r.gen.remote
        const remoteKey = r.gen.remoteKey
        if (remote === undefined || remoteKey === undefined) return
        counters.consentChecks++
        Metrics.increment(Metrics.iceChecks, consentLabels)
        r.lastSent = now()
        const result = yield* Effect.either(r.base.client.request(r.remote, {
          method: StunMessage.StunMethod.Binding,
          attributes: [StunAttribute.priority(prflxPriority(r.pair.local.candidate)), roleAttribute(controlling)]
        }, { credentials: StunTransaction.shortTerm(`${remote.ufrag}:${r.gen.local.ufrag}`, remoteKey) }))
        const ok = result._tag === "Right"
          ? TransportAddress.equals(result.right.from, r.remote)
          : result.left._tag === "StunErrorResponse" && result.left.code === 487
        if (!ok || r.expired) return
        r.lastConsent = now()
        r.answered = true
        if (route === r) {
          const s = yield* SubscriptionRef.get(state)
          if (s === "disconnected" || s === "checking" || s === "new") yield* setState(connectedState(r.gen))
        }
      })

    const consentLoop = (r: Route): Effect.Effect<void> =>
      Effect.gen(function*() {
        const inflight = yield* FiberHandle.make<void, never>()
        while (!r.expired) {
          const wait = yield* Random.nextIntBetween(Math.round(consentMs * 0.8), Math.round(consentMs * 1.2) + 1)
          yield* Effect.sleep(Duration.millis(wait))
          if (!r.answered && route === r) {
            const s = yield* SubscriptionRef.get(state)
            if (s === "connected" || s === "completed") yield* setState("disconnected")
          }
          r.answered = false
          yield* FiberHandle.run(inflight, consentCheck(r))
        }
      }).pipe(Effect.scoped)

    const expiryWatch = (r: Route): Effect.Effect<void> =>
      Effect.gen(function*() {
        while (true) {
          const left = r.lastConsent + consentExpiryMs - now()
          if (left <= 0) break
          yield* Effect.sleep(Duration.millis(left))
        }
        r.expired = true
        if (route === r) {
          yield* failWith(new ConsentExpired({ pair: r.pair.id, lastConsentAt: r.lastConsent }))
        }
      })

    const keepaliveLoop = (r: Route): Effect.Effect<void> =>
      Effect.gen(function*() {
        while (!r.expired) {
          const left = r.lastSent + keepaliveMs - now()
          if (left > 0) {
            yield* Effect.sleep(Duration.millis(left))
            continue
          }
          r.lastSent = now()
          counters.keepalives++
          yield* Effect.ignore(r.base.client.indication(r.remote, { method: StunMessage.StunMethod.Binding }))
        }
      })

    // A lite agent only answers (RFC 7675 §5.2 lets it answer consent checks without sending its own).
    const maintain = (r: Route): Effect.Effect<void> =>
      lite
        ? Effect.void
        : options.consent === false
        ? keepaliveLoop(r)
        : Effect.race(Effect.all([consentLoop(r), keepaliveLoop(r)], { concurrency: 2, discard: true }), expiryWatch(r))

    // -------------------------------------------------------------------------------------------------------------
    // Generations (the first one, and one per restart)
    // -------------------------------------------------------------------------------------------------------------

    const onGathered = (g: Generation, item: IceGatherer.Gathered): Effect.Effect<void> =>
      Effect.suspend(() => {
        const { base, local } = item
        if (!g.bases.has(base.key)) {
          g.bases.set(base.key, base)
          base.route({
            onRequest: onRequest(g, base),
            onOther: onOther(g, base)
          })
        }
        if (local.candidate.type === "host" || local.candidate.type === "relay") g.baseLocal.set(base.key, local)
        g.locals.push(local)
        g.list = IceChecklist.addLocal(g.list, local)
        return Effect.zipRight(
          Effect.flatMap(
            signalled(local.candidate),
            (candidate) => emit({ _tag: "Candidate", candidate, ufrag: g.local.ufrag })
          ),
          refresh(g)
        )
      })

    /**
     * The candidate as the peer is told of it: with mDNS publishing, a host candidate's address is its IP's
     * `<uuid>.local` name (draft §3.1.1) and a server-reflexive or relayed one hides the host IP behind
     * `raddr 0.0.0.0 rport 0`, as Chrome and Firefox write it.
     */
    const signalled = (candidate: IceCandidate.Candidate): Effect.Effect<IceCandidate.Candidate> => {
      const mdns = options.mdns
      if (mdns === undefined || mdns.publish !== true) return Effect.succeed(candidate)
      if (candidate.type === "host") {
        return Effect.map(mdns.service.register(candidate.address), (name) => ({ ...candidate, address: name }))
      }
      if (candidate.relatedAddress === undefined) return Effect.succeed(candidate)
      return Effect.succeed({ ...candidate, relatedAddress: "0.0.0.0", relatedPort: 0 })
    }

    const dropMdns = (dropped: MdnsCandidateDropped): Effect.Effect<void> =>
      Effect.suspend(() => {
        droppedCandidates.push(dropped)
        return Effect.logInfo(`ICE agent: ${dropped.message}`)
      })

    /**
     * Resolves a remote `.local` candidate (draft §3.2.1) in a fiber of the generation, one resolution per name (later
     * candidates with the name wait on it), at most {@link maxConcurrentMdnsResolutions} at once; the candidate is
     * then added with the IP (priority, foundation and type kept), or dropped with the resolver's reason. While any
     * name is pending the checklist cannot fail for want of candidates (end-of-candidates waits for it).
     */
    const resolveRemote = (g: Generation, candidate: IceCandidate.Candidate): Effect.Effect<void> =>
      Effect.suspend(() => {
        const mdns = options.mdns
        if (mdns === undefined) {
          return dropMdns(
            new MdnsCandidateDropped({
              reason: "NoResolver",
              name: candidate.address,
              candidate: describeCandidate(candidate)
            })
          )
        }
        const name = candidate.address.toLowerCase()
        const waiting = g.resolving.get(name)
        if (waiting !== undefined) {
          waiting.push(candidate)
          return Effect.void
        }
        g.resolving.set(name, [candidate])
        const settle = (ip: string | undefined, reason?: "Timeout" | "InvalidName") =>
          Effect.gen(function*() {
            const candidates = g.resolving.get(name) ?? []
            g.resolving.delete(name)
            for (const c of candidates) {
              if (ip !== undefined) {
                yield* addRemoteNow(g, { ...c, address: ip })
              } else {
                yield* dropMdns(
                  new MdnsCandidateDropped({
                    reason: reason ?? "Timeout",
                    name: c.address,
                    candidate: describeCandidate(c)
                  })
                )
              }
            }
            yield* refresh(g)
          })
        const resolution = mdnsSlots.withPermits(1)(mdns.service.resolve(name)).pipe(
          Effect.matchEffect({
            onFailure: (error) => settle(undefined, error.reason),
            onSuccess: (ip) => settle(ip)
          })
        )
        return Effect.asVoid(Effect.forkIn(resolution, g.scope))
      })

    const newGeneration = (credentials: Credentials): Effect.Effect<Generation> =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(agentScope, ExecutionStrategy.sequential)
        const g: Generation = {
          local: credentials,
          localKey: keyOf(credentials.pwd),
          remote: undefined,
          remoteKey: undefined,
          remoteEnd: false,
          gatheringComplete: false,
          gatheringState: "new",
          list: IceChecklist.empty({ controlling, maxPairs: options.maxPairs ?? IceChecklist.defaultMaxPairs }),
          scope,
          bases: new Map(),
          baseLocal: new Map(),
          locals: [],
          remotes: new Map(),
          pending: [],
          resolving: new Map(),
          triggered: [],
          validOf: new Map(),
          validLocal: new Map(),
          nominateOnSuccess: new Set(),
          nominating: undefined,
          learnt: new Map(),
          firstValidAt: undefined,
          started: false,
          done: false,
          reported: false,
          checks: undefined
        }
        g.checks = yield* Scope.extend(FiberMap.make<string>(), scope)
        yield* emit(lite ? { _tag: "Credentials", credentials, lite } : { _tag: "Credentials", credentials })
        const hostBases = options.mux === undefined
          ? undefined
          : yield* Scope.extend(options.mux.base(credentials.ufrag), scope).pipe(
            Effect.map((base) => [base]),
            Effect.catchAll((error) => Effect.as(Effect.logWarning(`ICE agent: ${error.message}`), []))
          )
        // A lite agent gathers host candidates only (RFC 8445 §2.5).
        const gatherOptions: IceGatherer.Options = {
          ...options,
          ...(lite ? { stunServers: [], turnServers: [] } : {}),
          ...(hostBases === undefined ? {} : { hostBases })
        }
        const gatherer = yield* Scope.extend(IceGatherer.make(gatherOptions), scope).pipe(Effect.provide(context))
        g.gatheringState = "gathering"
        yield* Effect.forkIn(
          Effect.gen(function*() {
            yield* Stream.runForEach(gatherer.candidates, (item) => onGathered(g, item))
            g.gatheringComplete = true
            g.gatheringState = "complete"
            yield* emit({ _tag: "EndOfCandidates", ufrag: g.local.ufrag })
            yield* refresh(g)
          }),
          scope
        )
        return g
      })

    const addRemoteNow = (g: Generation, candidate: IceCandidate.Candidate): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (candidate.component !== component) return Effect.void
        if (candidate.transport === "tcp" ? !tcpEnabled : candidate.transport !== "udp") return Effect.void
        if (IceCandidate.isMdns(candidate)) return resolveRemote(g, candidate)
        const k = remoteKey(candidate.transport, candidate.address, candidate.port)
        if (g.remotes.has(k)) return Effect.void
        g.remotes.set(k, candidate)
        g.list = IceChecklist.addRemote(g.list, candidate)
        return refresh(g)
      })

    const restartNow = Effect.gen(function*() {
      let credentials = yield* newCredentials
      while (credentials.ufrag === current.local.ufrag) credentials = yield* newCredentials
      const old = current
      if (route !== undefined && route.gen === old && !route.expired) {
        if (previous !== undefined) {
          previous.done = true
          yield* FiberSet.run(background, Scope.close(previous.scope, Exit.void))
        }
        previous = old
        old.done = true
        if (old.checks !== undefined) yield* FiberMap.clear(old.checks)
      } else {
        old.done = true
        yield* FiberSet.run(background, Scope.close(old.scope, Exit.void))
      }
      // `done` keeps the old generation's checks and bookkeeping quiet; its bases still answer checks (consent) and
      // carry data until the new generation selects a pair.
      failure = undefined
      current = yield* newGeneration(credentials)
      const s = yield* SubscriptionRef.get(state)
      if (s === "failed" || s === "disconnected" || route === undefined || route.expired) yield* setState("checking")
      yield* Effect.logDebug(`ICE agent: restart, new ufrag ${credentials.ufrag}`)
      return credentials
    })

    // The old generation's bases still answer with their own credentials while it carries data: `onRequest` is
    // bound to its generation, and `done` only stops learning and triggered checks there.

    current = yield* newGeneration(firstCredentials)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        route = undefined
        return Effect.zipRight(SubscriptionRef.set(state, "closed"), mailbox.shutdown)
      })
    )

    // The pacing loop: one check slot every Ta while there is work; asleep on the latch otherwise (any change to
    // the checklist opens it), never two slots less than Ta apart.
    yield* Effect.forkScoped(Effect.gen(function*() {
      while (true) {
        yield* pacing.await
        pacing.unsafeClose()
        const wait = lastSlot + taMillis - now()
        if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
        yield* Effect.repeat(
          Effect.tap(tick, () => {
            lastSlot = now()
          }),
          { schedule: Schedule.spaced(ta), while: (busy) => busy }
        )
      }
    }))

    if (options.failAfter !== undefined) {
      const limit = options.failAfter
      yield* Effect.forkScoped(Effect.gen(function*() {
        yield* Effect.sleep(limit)
        if (route === undefined && failure === undefined) {
          yield* failWith(new IceFailed({ pairs: pairFailures(current), reason: "Timeout" }))
        }
      }))
    }

    const addRemoteCredentials = (
      credentials: Credentials,
      remoteOptions?: RemoteOptions
    ): Effect.Effect<void, InvalidCredentials> =>
      Effect.gen(function*() {
        const invalidRemote = validateCredentials(credentials)
        if (Option.isSome(invalidRemote)) return yield* Effect.fail(invalidRemote.value)
        if (remoteOptions?.lite === true && !remoteLite) {
          remoteLite = true
          // §6.1.1: a full agent facing a lite one is controlling.
          if (!lite) switchRole(true)
        }
        const known = current.remote
        if (known !== undefined && known.ufrag === credentials.ufrag && known.pwd === credentials.pwd) return
        if (known !== undefined) yield* restartNow
        const g = current
        g.remote = credentials
        g.remoteKey = keyOf(credentials.pwd)
        const waiting = g.pending.splice(0).filter((p) => p.ufrag === credentials.ufrag)
        for (const p of waiting) yield* addRemoteNow(g, p.candidate)
        yield* refresh(g)
      })

    const addRemoteCandidate = (candidate: IceCandidate.Candidate, ufrag?: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const g = current
        if (ufrag !== undefined) {
          if (g.remote === undefined) {
            g.pending.push({ candidate, ufrag })
            return Effect.void
          }
          if (g.remote.ufrag !== ufrag) return Effect.void
        }
        return addRemoteNow(g, candidate)
      })

    const endOfRemoteCandidates = Effect.suspend(() => {
      current.remoteEnd = true
      return refresh(current)
    })

    const connected: Effect.Effect<SelectedPair, IceFailed | ConsentExpired> = selectedPair.changes.pipe(
      Stream.zipLatest(state.changes),
      Stream.filter(([, s]) => s === "connected" || s === "completed" || s === "failed" || s === "closed"),
      Stream.runHead,
      Effect.flatMap((head) => {
        if (Option.isSome(head)) {
          const [pair, s] = head.value
          if ((s === "connected" || s === "completed") && Option.isSome(pair)) return Effect.succeed(pair.value)
        }
        return Effect.fail(failure ?? new IceFailed({ pairs: [], reason: "AllPairsFailed" }))
      })
    )

    const localCandidates = Stream.suspend(() => {
      let seen = 0
      return events.changes.pipe(Stream.mapConcat((all) => {
        const fresh = all.slice(seen)
        seen = all.length
        return fresh
      }))
    })

    const agent: IceAgent = {
      localCredentials: Effect.sync(() => current.local),
      role: Effect.sync(() => controlling ? "controlling" : "controlled"),
      tieBreaker,
      lite,
      addRemoteCredentials,
      addRemoteCandidate,
      endOfRemoteCandidates,
      receive: (event) =>
        event._tag === "Credentials"
          ? addRemoteCredentials(event.credentials, event.lite === true ? { lite: true } : undefined)
          : event._tag === "Candidate"
          ? addRemoteCandidate(event.candidate, event.ufrag)
          : Effect.suspend(() => current.remote?.ufrag === event.ufrag ? endOfRemoteCandidates : Effect.void),
      localCandidates,
      gatheringState: Effect.sync(() => current.gatheringState),
      state,
      selectedPair,
      connected,
      failure: Effect.sync(() => Option.fromNullable(failure)),
      pairs: Effect.sync(() => current.list.pairs),
      droppedCandidates: Effect.sync(() => droppedCandidates.slice()),
      send: (data) =>
        Effect.suspend((): Effect.Effect<void, NotConnected | ConsentExpired | Network.NetworkError> => {
          const r = route
          if (r === undefined) {
            return Effect.flatMap(SubscriptionRef.get(state), (s) => Effect.fail(new NotConnected({ state: s })))
          }
          if (r.expired) return Effect.fail(new ConsentExpired({ pair: r.pair.id, lastConsentAt: r.lastConsent }))
          r.lastSent = now()
          return r.base.send(data, r.remote)
        }),
      data: Mailbox.toStream(mailbox),
      restart: Effect.withSpan(restartNow, "IceAgent.restart", { captureStackTrace: false }),
      stats: Effect.sync(() => ({ ...counters, connectedAfterMs: connectedAt }))
    }
    return agent
  }).pipe(Effect.withSpan("IceAgent.make", { captureStackTrace: false }))

/**
 * Connects two agents' signalling directly (each one's {@link IceAgent.localCandidates} into the other's
 * {@link IceAgent.receive}), in fibers of the caller's scope: what an application does over its signalling channel.
 *
 * @since 0.1.0
 * @category combinators
 */
export const pipeSignalling = (a: IceAgent, b: IceAgent): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(Effect.all([
    Effect.forkScoped(Stream.runForEach(a.localCandidates, (e) => Effect.ignore(b.receive(e)))),
    Effect.forkScoped(Stream.runForEach(b.localCandidates, (e) => Effect.ignore(a.receive(e))))
  ]))
