/**
 * NAT behaviour discovery (RFC 5780 §4) against a STUN server with two addresses: which mapping and filtering
 * behaviour (RFC 4787 §4.1, §5) the NATs between this host and the server show, whether they hairpin (RFC 5780
 * §3.4, RFC 4787 §6), and how long an idle mapping lives (RFC 5780 §4.6), reported as a typed {@link NatReport}
 * in the terms of `NatBehavior`.
 *
 * The tests, in the order they run (every request is a Binding request on the RFC 8489 retransmission schedule):
 *
 * 1. Test I (§4.2, §4.3, §4.4): a request to the server's primary address A1:P1 gives the mapped address M1
 *    (XOR-MAPPED-ADDRESS) and the alternate address A2:P2 (OTHER-ADDRESS). No answer: `NoAnswer`, the path has no
 *    UDP to the server. No OTHER-ADDRESS: `NoOtherAddress`, the server does not do RFC 5780. M1 equal to the
 *    socket's own address: no NAT (`natPresent: false`), and the mapping is endpoint-independent (§4.3).
 * 2. Filtering (§4.4), before anything is sent to A2. Test II asks A1:P1 with CHANGE-REQUEST "change IP and port":
 *    an answer from A2:P2 means endpoint-independent filtering. Otherwise test III asks with "change port": an
 *    answer from A1:P2 means address-dependent filtering, none means address-and-port-dependent. The filtering
 *    tests run before the mapping tests on purpose: §3.2 makes it a precondition that no binding to the alternate
 *    address exists, and mapping test II sends to A2 from the same mapping (with endpoint-independent mapping and
 *    address-dependent filtering, running it first would open the filter for A2 and report endpoint-independent
 *    filtering). An answer to a CHANGE-REQUEST that comes from any other address than the one asked for fails with
 *    `InconsistentAnswers`: a server that ignores CHANGE-REQUEST would otherwise make every NAT look open.
 * 3. Mapping (§4.3), only when a NAT is present. Test II asks A2:P1: the same mapped address as test I means
 *    endpoint-independent mapping. Otherwise test III asks A2:P2: the same mapped address as test II means
 *    address-dependent mapping, a different one address-and-port-dependent. These requests must be answered
 *    (`NoAnswer` otherwise). Only the OTHER-ADDRESS of test I is used (coturn pairs only its first address with the
 *    second, so the OTHER-ADDRESS in answers from A2 is not meaningful there).
 * 4. Hairpinning (§3.4, which describes the test; RFC 5780 has no §4 procedure for it). A second local socket B
 *    learns its own mapped address MB from the server, then B sends a Binding request to M1 (the §3.4 test: the
 *    client receiving its own request means the NAT hairpins) and, at the same time, the test socket sends one to
 *    MB. Sending both ways, as two ICE agents behind the same NAT would, opens each mapping's filter for the other,
 *    so a NAT that filters hairpinned packets like any other inbound packet is not reported as not hairpinning just
 *    because of its filtering. Either request arriving means hairpinning works. When neither mapping nor filtering
 *    is endpoint-independent, no hairpinned packet can pass a filter: a packet toward the NAT's own address leaves
 *    through another mapping than the one the server saw (address-dependent mapping), and that mapping is not one
 *    the receiver's mapping has sent to. Such a NAT reports `false` whether or not it hairpins: what ICE will see
 *    between two of its hosts' server-reflexive candidates. Without a NAT the requests go straight to the other
 *    socket, and the answer is `true`.
 * 5. Binding lifetime (§4.6), only when asked (it takes minutes). Each probe binds a fresh socket X, sends one
 *    Binding request from X (mapped address Pa:Pp), waits T with X silent, then sends from the test socket (the
 *    §4.6 port Y) a request with RESPONSE-PORT Pp. The answer arriving on X means the mapping outlived an idle
 *    time of T; no answer, or the answer arriving on Y (the NAT gave Pp to Y's new mapping), means it did not. A
 *    fresh X per probe stands in for §4.6's refresh from X between tests. T is found by a bounded binary search:
 *    the first probe waits `max` (alive: the lifetime is at least `max`, one probe), then the interval halves until
 *    it is narrower than `precision`, at most `1 + ⌈log2(max / precision)⌉` probes in all. T is measured from the
 *    answer to X's request to the probe's first send; since the NAT saw X idle a little longer (up to X's round
 *    trip before, and the probe's flight to the NAT after), the reported upper bound adds twice X's round trip.
 *
 * Timing. Requests that must be answered (test I, mapping tests II and III, B's and X's own Binding requests) are
 * full RFC 8489 transactions: with the default RTO of 500 ms, Rc = 7, Rm = 16 they give up after 39.5 s, and the
 * `StunTransaction.Rto`, `Rc` and `Rm` references shorten that. Requests whose answer may legitimately not come
 * (the CHANGE-REQUEST tests, the hairpinning requests, the lifetime probes) are retransmitted on the same schedule
 * but given up after `quietTimeout`, or when the transaction gives up if that is sooner (default 3 s: sends at 0,
 * 0.5 and 1.5 s with the default RTO, and the same 3 s wait coturn's `turnutils_natdiscovery` uses); §4.4 reads no
 * response as the test's answer, so running out of time there is a result, not an error. New transactions are
 * spaced at least 100 ms apart (§5: no more than ten new transactions per second). Everything runs on Effect's
 * `Clock`, so the whole discovery runs in virtual time on `VirtualNetwork`.
 *
 * One local socket carries test I, the filtering and mapping tests and the hairpinning target (§4.3 and §4.4
 * compare what one local endpoint gets). It is the `socket` option when given (the discovery installs its own
 * reader on it: set the application's handler again afterwards), or a socket bound for the discovery and closed
 * when it ends. The answers are upper bounds on how open the NAT is (§4): a NAT may behave differently under load,
 * for other ports (§4.1), or later.
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import { Clock, Data, Deferred, Duration, Effect, Either, Exit, Option, Ref } from "effect"
import * as NatBehavior from "./NatBehavior.js"
import * as Network from "./Network.js"
import * as StunAttribute from "./StunAttribute.js"
import * as StunMessage from "./StunMessage.js"
import * as StunTransaction from "./StunTransaction.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"

// ---------------------------------------------------------------------------------------------------------------
// Constants and options
// ---------------------------------------------------------------------------------------------------------------

/**
 * How long a test whose answer may legitimately not come (a CHANGE-REQUEST test of RFC 5780 §4.4, a hairpinning
 * request, a lifetime probe) waits before it reads the silence as its result: 3 s.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultQuietTimeout: Duration.Duration = Duration.seconds(3)

/**
 * The least time between the starts of two transactions: 100 ms (RFC 5780 §5: a client SHOULD NOT start more than
 * ten new STUN transactions per second).
 *
 * @since 0.1.0
 * @category constants
 */
export const transactionSpacing: Duration.Duration = Duration.millis(100)

/**
 * The longest idle time the lifetime search tries by default: 5 minutes (RFC 4787 REQ-5 recommends mappings of
 * at least that long; a NAT that keeps idle mappings longer is reported as "at least 5 minutes").
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLifetimeMax: Duration.Duration = Duration.minutes(5)

/**
 * How narrow the lifetime search makes its interval by default: 1 second.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLifetimePrecision: Duration.Duration = Duration.seconds(1)

/**
 * The binding lifetime search (RFC 5780 §4.6): the longest idle time to try and the width at which to stop.
 *
 * @since 0.1.0
 * @category models
 */
export interface LifetimeOptions {
  /** The longest idle time tried (default {@link defaultLifetimeMax}). */
  readonly max?: Duration.DurationInput | undefined
  /** Stop when "alive" and "gone" are at most this far apart (default {@link defaultLifetimePrecision}). */
  readonly precision?: Duration.DurationInput | undefined
}

/**
 * What to discover, and how.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The server's primary address A1:P1; the server must support RFC 5780 (OTHER-ADDRESS, CHANGE-REQUEST). */
  readonly server: SocketAddress
  /**
   * The local socket to test (RFC 5780 §4.1: test the port the application will use). The discovery installs its
   * own reader on it. Without it a socket is bound with `bind` and closed when the discovery ends.
   */
  readonly socket?: Network.DatagramSocket | undefined
  /** Where to bind the test socket when `socket` is not given (default: the wildcard of the server's family). */
  readonly bind?: Network.BindOptions | undefined
  /** How long a test whose answer may not come waits (default {@link defaultQuietTimeout}). */
  readonly quietTimeout?: Duration.DurationInput | undefined
  /** Which optional tests to run. */
  readonly tests?: {
    /** Hairpinning (RFC 5780 §3.4); default true. */
    readonly hairpinning?: boolean | undefined
    /** Binding lifetime (RFC 5780 §4.6); default false, since it takes up to about twice `max`. */
    readonly lifetime?: boolean | LifetimeOptions | undefined
  } | undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Report and errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * The tests, named as RFC 5780 §4 numbers them: `connectivity` is test I (§4.2, the first test of §4.3 and §4.4);
 * `setup` is binding the discovery's own sockets.
 *
 * @since 0.1.0
 * @category models
 */
export type TestName =
  | "setup"
  | "connectivity"
  | "filtering-II"
  | "filtering-III"
  | "mapping-II"
  | "mapping-III"
  | "hairpinning"
  | "lifetime"

/**
 * The result of the binding lifetime search (RFC 5780 §4.6), in milliseconds of idle time: the NAT removed an
 * idle mapping after more than `lowerBoundMs` and at most `upperBoundMs` (`undefined` when the mapping outlived the
 * longest wait tried, `lowerBoundMs`).
 *
 * @since 0.1.0
 * @category models
 */
export interface LifetimeEstimate {
  /** The longest wait after which the mapping still answered (0 when none did). */
  readonly lowerBoundMs: number
  /** The shortest wait after which it was gone, plus twice the round trip; `undefined` when it outlived `max`. */
  readonly upperBoundMs: number | undefined
  /** How many probes the search sent. */
  readonly probes: number
}

/**
 * The mapped addresses the mapping tests saw (RFC 5780 §4.3): test I to A1:P1, test II to A2:P1, test III to
 * A2:P2 (`undefined` for a test that did not run).
 *
 * @since 0.1.0
 * @category models
 */
export interface MappedAddresses {
  readonly testI: SocketAddress
  readonly testII: SocketAddress | undefined
  readonly testIII: SocketAddress | undefined
}

/**
 * What the discovery found.
 *
 * @since 0.1.0
 * @category models
 */
export interface NatReport {
  /** The server's primary address A1:P1 the tests started from. */
  readonly server: SocketAddress
  /** The server's OTHER-ADDRESS A2:P2 from test I (RFC 5780 §7.4). */
  readonly otherAddress: SocketAddress
  /** RESPONSE-ORIGIN of test I (RFC 5780 §7.3), when the server sent one. */
  readonly responseOrigin: SocketAddress | undefined
  /** The test socket's own address, as bound (a wildcard bind reports the wildcard). */
  readonly local: SocketAddress
  /** The mapped address of test I: the server-reflexive address of the test socket. */
  readonly mapped: SocketAddress
  /** False when the mapped address is the socket's own address (RFC 5780 §4.3: not NATed). */
  readonly natPresent: boolean
  /** Mapping behaviour (RFC 5780 §4.3); endpoint-independent without a NAT. */
  readonly mapping: NatBehavior.Mapping
  /** Filtering behaviour (RFC 5780 §4.4), of the NAT or of a firewall when there is no NAT. */
  readonly filtering: NatBehavior.Filtering
  /** Whether a request to the mapped address from another local port arrived (RFC 5780 §3.4). */
  readonly hairpinning: boolean | "untested"
  /** The binding lifetime (RFC 5780 §4.6). */
  readonly lifetime: LifetimeEstimate | "untested"
  /** The RFC 3489 name of the mapping and filtering combination. */
  readonly classicalName: NatBehavior.ClassicalName
  /**
   * Whether a peer behind a NAT that behaves like this one (another host of the same network, or a peer whose NAT
   * is of the same kind) can likely reach this host directly with STUN only: `NatBehavior.directPathLikely(self,
   * self)`. For another peer's behaviour, call `NatBehavior.directPathLikely(report, peer)`.
   */
  readonly directPathLikely: boolean
  /** MAPPED-ADDRESS and XOR-MAPPED-ADDRESS of test I differ: a generic ALG rewrites addresses (RFC 5780 §3.6). */
  readonly algDetected: boolean
  /** The mapped address of each mapping test. */
  readonly mappedAddresses: MappedAddresses
  /** Round-trip time of test I (including any retransmissions it needed). */
  readonly roundTrip: Duration.Duration
}

/**
 * Why the discovery could not finish:
 * - `NoAnswer`: a request that must be answered was not (test I: no UDP to the server; mapping tests: the server's
 *   alternate address is unreachable).
 * - `NoOtherAddress`: the answer to test I has no OTHER-ADDRESS: the server does not support RFC 5780 (§4.3).
 * - `ErrorResponse`: the server answered with an error (for example 420 to CHANGE-REQUEST or RESPONSE-PORT, §5).
 * - `InconsistentAnswers`: the answers contradict RFC 5780 (an OTHER-ADDRESS on the primary IP, an answer to a
 *   CHANGE-REQUEST from an address that was not asked for, no mapped address).
 * - `NetworkError`: a socket could not be bound or a request not sent.
 *
 * @since 0.1.0
 * @category errors
 */
export type NatDiscoveryErrorReason =
  | "NoAnswer"
  | "NoOtherAddress"
  | "ErrorResponse"
  | "InconsistentAnswers"
  | "NetworkError"

/**
 * The discovery failed: why, in which test, against which server (the primary address) and which address the
 * failing request went to.
 *
 * @since 0.1.0
 * @category errors
 */
export class NatDiscoveryError extends Data.TaggedError("NatDiscoveryError")<{
  readonly reason: NatDiscoveryErrorReason
  readonly test: TestName
  readonly server: string
  readonly remote: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message(): string {
    const where = `NAT discovery against ${this.server} failed in test ${this.test} (request to ${this.remote})`
    return `${where}: ${this.reason}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

const plain = (address: SocketAddress): SocketAddress => ({
  family: address.family,
  ip: address.ip,
  port: address.port
})

const isWildcard = (ip: string): boolean => ip === "0.0.0.0" || ip === "::"

const sameAddress = (a: SocketAddress, b: SocketAddress): boolean =>
  a.family === b.family && TransportAddress.equals(a, b)

/** What one answered Binding request told us. */
interface Answer {
  readonly mapped: SocketAddress
  readonly other: SocketAddress | undefined
  readonly origin: SocketAddress | undefined
  readonly from: SocketAddress
  readonly alg: boolean
  readonly elapsed: Duration.Duration
}

const binding = StunMessage.StunMethod.Binding

/** Runs the effect with every transaction id drawn being `id` (to know a request's id before it is sent). */
const withTransactionId = (id: Uint8Array) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.provideService(effect, StunTransaction.TransactionIdSource, Effect.succeed(id))

/** A fresh transaction id from the current source (random by default, `Random` in reproducible tests). */
const newTransactionId: Effect.Effect<Uint8Array> = Effect.flatten(StunTransaction.TransactionIdSource)

/** Ids of requests the discovery expects to receive (hairpinning), and what to complete when one arrives. */
const makeRequestWatch = () => {
  const waiting = new Map<string, Deferred.Deferred<void>>()
  const onRequest = (message: StunMessage.DecodedStunMessage): void => {
    const deferred = waiting.get(StunMessage.transactionIdHex(message.transactionId))
    if (deferred !== undefined) Deferred.unsafeDone(deferred, Exit.void)
  }
  return { waiting, onRequest }
}

interface Discovery {
  readonly network: Network.Service
  readonly server: SocketAddress
  readonly serverText: string
  readonly quiet: Duration.Duration
  readonly pace: Effect.Effect<void>
}

const failure = (
  ctx: Discovery,
  reason: NatDiscoveryErrorReason,
  test: TestName,
  remote: SocketAddress,
  detail: string,
  cause?: unknown
) =>
  new NatDiscoveryError({
    reason,
    test,
    server: ctx.serverText,
    remote: TransportAddress.format(remote),
    detail,
    cause
  })

/** Spacing of new transactions (RFC 5780 §5): waits until at least `transactionSpacing` after the previous start. */
const makePacer: Effect.Effect<Effect.Effect<void>> = Effect.map(
  Ref.make<number | undefined>(undefined),
  (last) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const previous = yield* Ref.get(last)
      const at = previous === undefined ? now : Math.max(now, previous + Duration.toMillis(transactionSpacing))
      yield* Ref.set(last, at)
      if (at > now) yield* Effect.sleep(Duration.millis(at - now))
    })
)

/** Reads the mapped address and the RFC 5780 attributes of a success response. */
const readAnswer = (
  ctx: Discovery,
  test: TestName,
  to: SocketAddress,
  response: StunTransaction.Response
): Effect.Effect<Answer, NatDiscoveryError> => {
  const message = response.message
  const xor = StunMessage.find(message, "XorMappedAddress")?.address
  const legacy = StunMessage.find(message, "MappedAddress")?.address
  const mapped = xor ?? legacy
  if (mapped === undefined) {
    return Effect.fail(
      failure(ctx, "InconsistentAnswers", test, to, "the answer has neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS")
    )
  }
  if (mapped.family !== ctx.server.family) {
    return Effect.fail(
      failure(
        ctx,
        "InconsistentAnswers",
        test,
        to,
        `mapped address ${TransportAddress.format(mapped)} is not ${ctx.server.family}`
      )
    )
  }
  const other = StunMessage.find(message, "OtherAddress")?.address
  const origin = StunMessage.find(message, "ResponseOrigin")?.address
  return Effect.succeed({
    mapped: plain(mapped),
    other: other === undefined ? undefined : plain(other),
    origin: origin === undefined ? undefined : plain(origin),
    from: plain(response.from),
    alg: xor !== undefined && legacy !== undefined && !sameAddress(xor, legacy),
    elapsed: response.elapsed
  })
}

type RequestError = StunTransaction.StunTransactionError

/** The typed error for a failed transaction. Encoding and credential errors cannot happen here: defects. */
const transactionFailure = (ctx: Discovery, test: TestName, to: SocketAddress) => (error: RequestError) => {
  switch (error._tag) {
    case "StunTimeout":
      return Effect.fail(
        failure(
          ctx,
          "NoAnswer",
          test,
          to,
          `no answer after ${error.attempts} sends in ${Duration.format(error.elapsed)}`,
          error
        )
      )
    case "StunErrorResponse":
      return Effect.fail(failure(ctx, "ErrorResponse", test, to, `error ${error.code} ${error.reason}`, error))
    case "NetworkError":
      return Effect.fail(failure(ctx, "NetworkError", test, to, error.message, error))
    default:
      return Effect.die(error)
  }
}

/** A Binding request that must be answered: a full RFC 8489 transaction. */
const expect = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  test: TestName,
  to: SocketAddress,
  attributes: ReadonlyArray<StunAttribute.StunAttribute> = []
): Effect.Effect<Answer, NatDiscoveryError> =>
  Effect.zipRight(
    ctx.pace,
    client.request(to, { method: binding, attributes }).pipe(
      Effect.catchAll(transactionFailure(ctx, test, to)),
      Effect.flatMap((response) => readAnswer(ctx, test, to, response))
    )
  )

/** A Binding request whose answer may not come: retransmitted, given up after the quiet timeout. */
const perhaps = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  test: TestName,
  to: SocketAddress,
  attributes: ReadonlyArray<StunAttribute.StunAttribute>
): Effect.Effect<Option.Option<Answer>, NatDiscoveryError> =>
  Effect.zipRight(
    ctx.pace,
    client.request(to, { method: binding, attributes }).pipe(
      Effect.map(Option.some),
      Effect.catchTag("StunTimeout", () => Effect.succeed(Option.none<StunTransaction.Response>())),
      Effect.catchAll(transactionFailure(ctx, test, to)),
      Effect.timeoutTo({
        duration: ctx.quiet,
        onSuccess: (answer) => answer,
        onTimeout: () => Option.none<StunTransaction.Response>()
      }),
      Effect.flatMap(Option.match({
        onNone: () => Effect.succeed(Option.none<Answer>()),
        onSome: (response) => Effect.map(readAnswer(ctx, test, to, response), Option.some)
      }))
    )
  )

/** Binds another local socket like the test socket (same IP when it is bound to one, any port). */
const bindCompanion = (ctx: Discovery, local: SocketAddress, test: TestName) =>
  ctx.network.bindUdp(isWildcard(local.ip) ? { family: local.family } : { family: local.family, address: local.ip })
    .pipe(
      Effect.mapError((error) =>
        failure(ctx, "NetworkError", test, ctx.server, `cannot bind a second local socket: ${error.message}`, error)
      )
    )

/** Whether `mapped` is the socket's own address (RFC 5780 §4.3): its IP (or one of the host's, for a wildcard). */
const isOwnAddress = (
  network: Network.Service,
  local: SocketAddress,
  mapped: SocketAddress
): Effect.Effect<boolean> => {
  if (mapped.port !== local.port || mapped.family !== local.family) return Effect.succeed(false)
  if (!isWildcard(local.ip)) return Effect.succeed(local.ip === mapped.ip)
  return network.interfaces.pipe(
    Effect.map((interfaces) =>
      interfaces.some((i) =>
        Option.match(TransportAddress.canonicalIp(i.address), {
          onNone: () => false,
          onSome: (canonical) => canonical.ip === mapped.ip
        })
      )
    ),
    Effect.orElseSucceed(() => false)
  )
}

// ---------------------------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------------------------

/** RFC 5780 §4.4, tests II and III. */
const filteringTests = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  other: SocketAddress
): Effect.Effect<NatBehavior.Filtering, NatDiscoveryError> =>
  Effect.gen(function*() {
    const server = ctx.server
    const both = yield* perhaps(ctx, client, "filtering-II", server, [
      StunAttribute.changeRequest({ changeIp: true, changePort: true })
    ])
    if (Option.isSome(both)) {
      if (!sameAddress(both.value.from, other)) {
        return yield* failure(
          ctx,
          "InconsistentAnswers",
          "filtering-II",
          server,
          `asked to answer from OTHER-ADDRESS ${TransportAddress.format(other)}, the server answered from ${
            TransportAddress.format(both.value.from)
          }`
        )
      }
      return "endpoint-independent"
    }
    const portOnly = yield* perhaps(ctx, client, "filtering-III", server, [
      StunAttribute.changeRequest({ changeIp: false, changePort: true })
    ])
    if (Option.isNone(portOnly)) return "address-and-port-dependent"
    const expected: SocketAddress = { family: server.family, ip: server.ip, port: other.port }
    if (!sameAddress(portOnly.value.from, expected)) {
      return yield* failure(
        ctx,
        "InconsistentAnswers",
        "filtering-III",
        server,
        `asked to answer from ${TransportAddress.format(expected)} (change port), the server answered from ${
          TransportAddress.format(portOnly.value.from)
        }`
      )
    }
    return "address-dependent"
  })

/** RFC 5780 §4.3, tests II and III (test I has run). */
const mappingTests = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  first: Answer,
  other: SocketAddress
): Effect.Effect<
  {
    readonly mapping: NatBehavior.Mapping
    readonly testII: SocketAddress
    readonly testIII: SocketAddress | undefined
  },
  NatDiscoveryError
> =>
  Effect.gen(function*() {
    const alternateIpPrimaryPort: SocketAddress = { family: other.family, ip: other.ip, port: ctx.server.port }
    const testII = yield* expect(ctx, client, "mapping-II", alternateIpPrimaryPort)
    if (sameAddress(testII.mapped, first.mapped)) {
      return { mapping: "endpoint-independent", testII: testII.mapped, testIII: undefined }
    }
    const testIII = yield* expect(ctx, client, "mapping-III", other)
    return {
      mapping: sameAddress(testIII.mapped, testII.mapped) ? "address-dependent" : "address-and-port-dependent",
      testII: testII.mapped,
      testIII: testIII.mapped
    }
  })

/** RFC 5780 §3.4, both ways: B → M1 and the test socket → MB; either request arriving means hairpinning. */
const hairpinningTest = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  watch: ReturnType<typeof makeRequestWatch>,
  local: SocketAddress,
  mapped: SocketAddress
): Effect.Effect<boolean, NatDiscoveryError> =>
  Effect.scoped(Effect.gen(function*() {
    const companion = yield* bindCompanion(ctx, local, "hairpinning")
    const companionWatch = makeRequestWatch()
    const companionClient = yield* StunTransaction.makeUdp(companion, { onRequest: companionWatch.onRequest })
    const companionMapped = (yield* expect(ctx, companionClient, "hairpinning", ctx.server)).mapped
    const arrived = yield* Deferred.make<void>()
    const fromCompanion = yield* newTransactionId
    const fromTestSocket = yield* newTransactionId
    const fromCompanionKey = StunMessage.transactionIdHex(fromCompanion)
    watch.waiting.set(fromCompanionKey, arrived)
    companionWatch.waiting.set(StunMessage.transactionIdHex(fromTestSocket), arrived)
    yield* Effect.addFinalizer(() => Effect.sync(() => watch.waiting.delete(fromCompanionKey)))
    // Nobody answers these requests: each transaction retransmits until the race ends it or it gives up.
    const send = (
      sender: StunTransaction.StunClient,
      to: SocketAddress,
      id: Uint8Array
    ): Effect.Effect<void, NatDiscoveryError> =>
      sender.request(to, { method: binding }).pipe(
        withTransactionId(id),
        Effect.asVoid,
        Effect.catchTag("StunTimeout", () => Effect.void),
        Effect.catchAll(transactionFailure(ctx, "hairpinning", to))
      )
    const requests = Effect.zipRight(
      ctx.pace,
      Effect.all([send(companionClient, mapped, fromCompanion), send(client, companionMapped, fromTestSocket)], {
        concurrency: 2,
        discard: true
      })
    )
    return yield* Effect.raceFirst(Effect.as(Deferred.await(arrived), true), Effect.as(requests, false)).pipe(
      Effect.timeoutTo({ duration: ctx.quiet, onSuccess: (ok) => ok, onTimeout: () => false })
    )
  }))

/** One RFC 5780 §4.6 probe: did a mapping left idle for `waitMs` still deliver? */
const lifetimeProbe = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  local: SocketAddress,
  waitMs: number
): Effect.Effect<
  { readonly alive: boolean; readonly waitedMs: number; readonly roundTripMs: number },
  NatDiscoveryError
> =>
  Effect.scoped(Effect.gen(function*() {
    const x = yield* bindCompanion(ctx, local, "lifetime")
    const xClient = yield* StunTransaction.makeUdp(x)
    const xAnswer = yield* expect(ctx, xClient, "lifetime", ctx.server)
    const answeredAt = yield* Clock.currentTimeMillis
    const id = yield* newTransactionId
    const key = StunMessage.transactionIdHex(id)
    const received = yield* Deferred.make<void>()
    // From now on X only listens, for the probe's answer.
    yield* x.setHandler((data) => {
      const decoded = StunMessage.decode(data)
      if (
        Either.isRight(decoded) && decoded.right.class === StunMessage.StunClass.SuccessResponse &&
        StunMessage.transactionIdHex(decoded.right.transactionId) === key
      ) Deferred.unsafeDone(received, Exit.void)
    })
    yield* Effect.sleep(Duration.millis(waitMs))
    yield* ctx.pace
    const sentAt = yield* Clock.currentTimeMillis
    // An answer to Y itself (the request's own transaction succeeding) means the NAT reused Pp for Y: gone.
    const probe = client.request(ctx.server, {
      method: binding,
      attributes: [StunAttribute.responsePort(xAnswer.mapped.port)]
    }).pipe(
      withTransactionId(id),
      Effect.as(false),
      Effect.catchTag("StunTimeout", () => Effect.succeed(false)),
      Effect.catchAll(transactionFailure(ctx, "lifetime", ctx.server))
    )
    const alive = yield* Effect.raceFirst(Effect.as(Deferred.await(received), true), probe).pipe(
      Effect.timeoutTo({ duration: ctx.quiet, onSuccess: (ok) => ok, onTimeout: () => false })
    )
    yield* Effect.logDebug("NatDiscovery: lifetime probe").pipe(
      Effect.annotateLogs({ waitedMs: sentAt - answeredAt, alive, mapped: TransportAddress.format(xAnswer.mapped) })
    )
    return { alive, waitedMs: sentAt - answeredAt, roundTripMs: Duration.toMillis(xAnswer.elapsed) }
  }))

/** RFC 5780 §4.6 as a bounded binary search over the idle time. */
const lifetimeSearch = (
  ctx: Discovery,
  client: StunTransaction.StunClient,
  local: SocketAddress,
  options: LifetimeOptions
): Effect.Effect<LifetimeEstimate, NatDiscoveryError> =>
  Effect.gen(function*() {
    const maxMs = Math.max(1, Math.round(Duration.toMillis(Duration.decode(options.max ?? defaultLifetimeMax))))
    const precisionMs = Math.max(
      1,
      Math.round(Duration.toMillis(Duration.decode(options.precision ?? defaultLifetimePrecision)))
    )
    const limit = 1 + Math.ceil(Math.log2(Math.max(1, maxMs / precisionMs)))
    const first = yield* lifetimeProbe(ctx, client, local, maxMs)
    if (first.alive) return { lowerBoundMs: first.waitedMs, upperBoundMs: undefined, probes: 1 }
    let low = 0
    let high = first.waitedMs
    let roundTripMs = first.roundTripMs
    let probes = 1
    while (high - low > precisionMs && probes < limit) {
      const result = yield* lifetimeProbe(ctx, client, local, Math.round((low + high) / 2))
      probes++
      roundTripMs = Math.max(roundTripMs, result.roundTripMs)
      if (result.alive) low = Math.max(low, result.waitedMs)
      else high = Math.min(high, result.waitedMs)
    }
    return { lowerBoundMs: low, upperBoundMs: high + 2 * roundTripMs, probes }
  })

// ---------------------------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------------------------

const run = (options: Options): Effect.Effect<NatReport, NatDiscoveryError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const server = plain(options.server)
    const ctx: Discovery = {
      network,
      server,
      serverText: TransportAddress.format(server),
      quiet: Duration.decode(options.quietTimeout ?? defaultQuietTimeout),
      pace: yield* makePacer
    }
    const socket = options.socket ?? (yield* network.bindUdp(options.bind ?? { family: server.family }).pipe(
      Effect.mapError((error) =>
        failure(ctx, "NetworkError", "setup", server, `cannot bind the test socket: ${error.message}`, error)
      )
    ))
    const local = plain(socket.local)
    const watch = makeRequestWatch()
    const client = yield* StunTransaction.makeUdp(socket, { onRequest: watch.onRequest })

    // Test I (RFC 5780 §4.2, §4.3, §4.4).
    const first = yield* expect(ctx, client, "connectivity", server)
    const other = first.other
    if (other === undefined) {
      return yield* failure(
        ctx,
        "NoOtherAddress",
        "connectivity",
        server,
        "the answer has no OTHER-ADDRESS: the server does not support RFC 5780 behavior discovery"
      )
    }
    if (other.family !== server.family || other.ip === server.ip || other.port === server.port) {
      return yield* failure(
        ctx,
        "InconsistentAnswers",
        "connectivity",
        server,
        `OTHER-ADDRESS ${TransportAddress.format(other)} must differ from ${ctx.serverText} in both IP and port`
      )
    }
    const natPresent = !(yield* isOwnAddress(network, local, first.mapped))
    yield* Effect.logDebug("NatDiscovery: test I").pipe(
      Effect.annotateLogs({
        mapped: TransportAddress.format(first.mapped),
        other: TransportAddress.format(other),
        natPresent
      })
    )

    // Filtering first: no binding toward the alternate address may exist yet (RFC 5780 §3.2, §4.4).
    const filtering = yield* filteringTests(ctx, client, other)

    // Mapping (§4.3); without a NAT the effective mapping is endpoint-independent.
    const mappingResult = natPresent
      ? yield* mappingTests(ctx, client, first, other)
      : { mapping: "endpoint-independent" as const, testII: undefined, testIII: undefined }

    const tests = options.tests ?? {}
    const hairpinning = tests.hairpinning === false
      ? "untested" as const
      : yield* hairpinningTest(ctx, client, watch, local, first.mapped)

    const lifetimeOption = tests.lifetime ?? false
    const lifetime = lifetimeOption === false
      ? "untested" as const
      : yield* lifetimeSearch(ctx, client, local, lifetimeOption === true ? {} : lifetimeOption)

    const behaviour = { mapping: mappingResult.mapping, filtering }
    const report: NatReport = {
      server,
      otherAddress: other,
      responseOrigin: first.origin,
      local,
      mapped: first.mapped,
      natPresent,
      mapping: mappingResult.mapping,
      filtering,
      hairpinning,
      lifetime,
      classicalName: NatBehavior.classicalName(mappingResult.mapping, filtering),
      directPathLikely: NatBehavior.directPathLikely(behaviour, behaviour),
      algDetected: first.alg,
      mappedAddresses: { testI: first.mapped, testII: mappingResult.testII, testIII: mappingResult.testIII },
      roundTrip: first.elapsed
    }
    yield* Effect.logDebug("NatDiscovery: done").pipe(Effect.annotateLogs({ report: format(report) }))
    return report
  })

/**
 * Runs the RFC 5780 tests against `options.server` and reports what the NATs on the way do. Needs the `Network`
 * service (real sockets or the simulated internet); binds and closes its own sockets. Fails with a
 * {@link NatDiscoveryError} that names the test and the reason.
 *
 * @since 0.1.0
 * @category constructors
 */
export const discover = (options: Options): Effect.Effect<NatReport, NatDiscoveryError, Network.Network> =>
  Effect.scoped(run(options)).pipe(
    Effect.withSpan("NatDiscovery.discover", {
      captureStackTrace: false,
      attributes: { server: TransportAddress.format(options.server) }
    })
  )

// ---------------------------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------------------------

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`

/**
 * A one-line summary of a report, for logs and the command line, for example
 * `NAT: EIM/APDF (port-restricted-cone), mapped 203.0.113.1:49152, hairpinning yes, lifetime 30–30.1 s`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (report: NatReport): string => {
  const behaviour = `${NatBehavior.abbreviation("mapping", report.mapping)}/${
    NatBehavior.abbreviation("filtering", report.filtering)
  } (${report.classicalName})`
  const hairpinning = report.hairpinning === "untested" ? "untested" : report.hairpinning ? "yes" : "no"
  const lifetime = report.lifetime === "untested"
    ? "untested"
    : report.lifetime.upperBoundMs === undefined
    ? `at least ${seconds(report.lifetime.lowerBoundMs)}`
    : `${seconds(report.lifetime.lowerBoundMs)}–${seconds(report.lifetime.upperBoundMs)}`
  return `${report.natPresent ? "NAT" : "no NAT"}: ${behaviour}, mapped ${
    TransportAddress.format(report.mapped)
  }, hairpinning ${hairpinning}, lifetime ${lifetime}${report.algDetected ? ", ALG detected" : ""}, direct path ${
    report.directPathLikely ? "likely" : "unlikely"
  }`
}
