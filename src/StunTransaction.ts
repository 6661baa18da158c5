/**
 * STUN client transactions (RFC 8489 §6.2–§6.3, §9): send a request, retransmit it on the RFC schedule, match the
 * response by transaction id, check its FINGERPRINT and MESSAGE-INTEGRITY, and return a typed result.
 *
 * A {@link StunClient} owns one socket's reader. For every datagram (or TCP frame) it decodes STUN in plain code:
 * a response is matched in a `Map` keyed by transaction id and completes its transaction's `Deferred`
 * (`Deferred.unsafeDone`, no fiber per packet); requests and indications go to the `onRequest` / `onIndication`
 * handlers; anything else (ChannelData, media) to `onOther`. So the ICE agent and the TURN client can share one
 * socket between their transactions and their data path.
 *
 * Timing, all on Effect's `Clock` (RFC 8489 §6.2.1, §6.2.2):
 * - UDP: the request leaves at 0 and is retransmitted after RTO, 2·RTO, 4·RTO… until Rc = 7 sends, then the
 *   client waits Rm·RTO (Rm = 16) more; with RTO = 500 ms the sends are at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s
 *   and the transaction fails with {@link StunTimeout} at 39.5 s. {@link retransmissionSchedule} is that cadence
 *   as a `Schedule`; the final wait is an `Effect.sleep`, since a `Schedule` cannot express it.
 * - TCP/TLS: one send, and failure after Ti = 39.5 s.
 * RTO, Rc, Rm and Ti are `Context.Reference`s, so a test or an application overrides one with
 * `Effect.provideService`.
 *
 * Authentication (RFC 8489 §9): short-term credentials add USERNAME and MESSAGE-INTEGRITY with the given key
 * (ICE); long-term credentials ({@link makeLongTermSession}) start without credentials, learn REALM and NONCE from
 * the 401, and retry once with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (SHA-256 keys when the server offers
 * PASSWORD-ALGORITHMS with SHA-256); a 438 Stale Nonce is retried once with the new nonce. The session keeps the
 * realm, nonce and key for the next request. A response to an authenticated request must carry a valid
 * MESSAGE-INTEGRITY (except the 400, 401, 420 and 438 answers a server sends before it can check credentials);
 * a response with a bad FINGERPRINT or integrity is dropped and counted, as if it never arrived.
 *
 * Transaction ids come from {@link TransactionIdSource}: cryptographically random by default (RFC 8489 §6 requires
 * it: an off-path attacker must not guess them); tests that want reproducible ids provide
 * {@link transactionIdsFromRandom}, which draws them from Effect's `Random`.
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import { Clock, Context, Data, Deferred, Duration, Effect, Either, Exit, Random, Ref, Schedule } from "effect"
import * as Metrics from "./Metrics.js"
import type { DatagramSocket, NetworkError, StreamSocket } from "./Network.js"
import * as StreamFraming from "./StreamFraming.js"
import * as StunAttribute from "./StunAttribute.js"
import type { CredentialError, IntegrityKey } from "./StunIntegrity.js"
import * as StunIntegrity from "./StunIntegrity.js"
import type { DecodedStunMessage, StunEncodeError } from "./StunMessage.js"
import * as StunMessage from "./StunMessage.js"
import type { SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"

// ---------------------------------------------------------------------------------------------------------------
// Tunables
// ---------------------------------------------------------------------------------------------------------------

/**
 * RTO, the initial retransmission timeout (RFC 8489 §6.2.1): 500 ms by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class Rto extends Context.Reference<Rto>()("effect-ice/StunTransaction/Rto", {
  defaultValue: (): Duration.Duration => Duration.millis(500)
}) {}

/**
 * Rc, the number of times a request is sent over UDP (RFC 8489 §6.2.1): 7 by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class Rc extends Context.Reference<Rc>()("effect-ice/StunTransaction/Rc", {
  defaultValue: (): number => 7
}) {}

/**
 * Rm, the multiple of RTO waited after the last send (RFC 8489 §6.2.1): 16 by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class Rm extends Context.Reference<Rm>()("effect-ice/StunTransaction/Rm", {
  defaultValue: (): number => 16
}) {}

/**
 * Ti, the transaction timeout over TCP and TLS (RFC 8489 §6.2.2): 39.5 s by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class TcpTimeout extends Context.Reference<TcpTimeout>()("effect-ice/StunTransaction/TcpTimeout", {
  defaultValue: (): Duration.Duration => Duration.millis(39_500)
}) {}

/**
 * Where transaction ids come from: 96 cryptographically random bits from the platform (Web Crypto) by default.
 *
 * @since 0.1.0
 * @category tunables
 */
export class TransactionIdSource extends Context.Reference<TransactionIdSource>()(
  "effect-ice/StunTransaction/TransactionIdSource",
  { defaultValue: (): Effect.Effect<Uint8Array> => Effect.sync(() => crypto.getRandomValues(new Uint8Array(12))) }
) {}

/**
 * Transaction ids drawn from Effect's `Random`: reproducible under a seeded or fixed `Random`, for tests and
 * simulations. Not for production, where ids must be unpredictable.
 *
 * @since 0.1.0
 * @category tunables
 */
export const transactionIdsFromRandom: Effect.Effect<Uint8Array> = Effect.gen(function*() {
  const id = new Uint8Array(12)
  for (let i = 0; i < 12; i++) id[i] = yield* Random.nextIntBetween(0, 256)
  return id
})

/**
 * The RFC 8489 §6.2.1 retransmission cadence: waits of RTO, 2·RTO, 4·RTO, … between the Rc sends of a request
 * (`Rc − 1` recurrences of an exponential schedule). Repeating the first send with it gives the send instants;
 * the final wait of Rm·RTO follows.
 *
 * @since 0.1.0
 * @category schedules
 */
export const retransmissionSchedule = (rto: Duration.DurationInput, rc: number): Schedule.Schedule<unknown> =>
  Schedule.exponential(rto, 2).pipe(Schedule.intersect(Schedule.recurs(Math.max(0, rc - 1))))

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * No valid response came in time.
 *
 * @since 0.1.0
 * @category errors
 */
export class StunTimeout extends Data.TaggedError("StunTimeout")<{
  readonly method: number
  readonly transactionId: string
  readonly remote: string
  readonly attempts: number
  readonly elapsed: Duration.Duration
}> {
  override get message(): string {
    return `no STUN response from ${this.remote} to transaction ${this.transactionId} after ${this.attempts} sends in ${
      Duration.format(this.elapsed)
    }`
  }
}

/**
 * The server answered with an error response (after any 401/438 retry).
 *
 * @since 0.1.0
 * @category errors
 */
export class StunErrorResponse extends Data.TaggedError("StunErrorResponse")<{
  readonly method: number
  readonly code: number
  readonly reason: string
  readonly remote: string
  readonly transactionId: string
  readonly response: DecodedStunMessage
}> {
  override get message(): string {
    return `STUN error ${this.code} ${this.reason} from ${this.remote} (transaction ${this.transactionId})`
  }
}

/**
 * Everything a request can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type StunTransactionError =
  | StunTimeout
  | StunErrorResponse
  | NetworkError
  | StunEncodeError
  | CredentialError

// ---------------------------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------------------------

interface LongTermState {
  readonly realm: string | undefined
  readonly nonce: string | undefined
  readonly key: IntegrityKey | undefined
  readonly passwordAlgorithms: StunAttribute.PasswordAlgorithms | undefined
  readonly algorithm: number
}

/**
 * Long-term credentials and what the client has learnt from the server: realm, nonce, the derived key and the
 * negotiated password algorithm. One session serves every request to one server (a TURN client's allocation).
 *
 * @since 0.1.0
 * @category models
 */
export interface LongTermSession {
  readonly _tag: "LongTerm"
  readonly username: string
  readonly password: string
  /** @internal */
  readonly state: Ref.Ref<LongTermState>
}

/**
 * Credentials for a request: short-term (USERNAME plus a key, as ICE uses) or a long-term session.
 *
 * @since 0.1.0
 * @category models
 */
export type Credentials =
  | { readonly _tag: "ShortTerm"; readonly username: string; readonly key: IntegrityKey }
  | LongTermSession

/**
 * A long-term credential session for a username and password (RFC 8489 §9.2).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLongTermSession = (username: string, password: string): Effect.Effect<LongTermSession> =>
  Effect.map(
    Ref.make<LongTermState>({
      realm: undefined,
      nonce: undefined,
      key: undefined,
      passwordAlgorithms: undefined,
      algorithm: StunAttribute.PasswordAlgorithmNumber.Md5
    }),
    (state) => ({ _tag: "LongTerm", username, password, state })
  )

/**
 * Short-term credentials: the USERNAME to send and the key for MESSAGE-INTEGRITY.
 *
 * @since 0.1.0
 * @category constructors
 */
export const shortTerm = (username: string, key: IntegrityKey): Credentials => ({ _tag: "ShortTerm", username, key })

/**
 * The realm, nonce and key a long-term session currently holds (for logs and tests).
 *
 * @since 0.1.0
 * @category getters
 */
export const sessionState = (
  session: LongTermSession
): Effect.Effect<
  { readonly realm: string | undefined; readonly nonce: string | undefined; readonly algorithm: number }
> => Effect.map(Ref.get(session.state), (s) => ({ realm: s.realm, nonce: s.nonce, algorithm: s.algorithm }))

// ---------------------------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------------------------

/**
 * Handlers for what arrives on the client's socket besides responses.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handlers {
  /** A STUN request (decoded, not yet authenticated: the handler decides). */
  readonly onRequest?: ((message: DecodedStunMessage, from: SocketAddress) => Effect.Effect<void> | void) | undefined
  /** A STUN indication. */
  readonly onIndication?:
    | ((message: DecodedStunMessage, from: SocketAddress) => Effect.Effect<void> | void)
    | undefined
  /** Anything that is not STUN: ChannelData, DTLS, RTP… (RFC 7983 demultiplexing is the handler's). */
  readonly onOther?: ((data: Uint8Array, from: SocketAddress) => Effect.Effect<void> | void) | undefined
}

/**
 * A successful transaction.
 *
 * @since 0.1.0
 * @category models
 */
export interface Response {
  readonly message: DecodedStunMessage
  /** Where the response came from (RFC 5780 answers may come from the server's other address). */
  readonly from: SocketAddress
  /** How many times the request was sent. */
  readonly attempts: number
  /** Time from the first send to the response. */
  readonly elapsed: Duration.Duration
}

/**
 * What to send: a method and its attributes (the client adds credentials, MESSAGE-INTEGRITY and FINGERPRINT).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestSpec {
  readonly method: number
  readonly attributes?: ReadonlyArray<StunAttribute.StunAttribute> | undefined
}

/**
 * Per-request options.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  readonly credentials?: Credentials | undefined
  /** Append FINGERPRINT (default true). */
  readonly fingerprint?: boolean | undefined
}

/**
 * A transaction client on one socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface StunClient {
  readonly transport: "udp" | "tcp"
  /** Runs one request to completion (with any 401/438 retry). Over TCP `to` is ignored: the connection's peer. */
  readonly request: (
    to: SocketAddress,
    spec: RequestSpec,
    options?: RequestOptions
  ) => Effect.Effect<Response, StunTransactionError>
  /** Sends an indication (no response, no retransmission). */
  readonly indication: (
    to: SocketAddress,
    spec: RequestSpec,
    options?: RequestOptions
  ) => Effect.Effect<void, NetworkError | StunEncodeError>
  /** Sends raw bytes on the client's socket (answers to requests, application data). */
  readonly send: (to: SocketAddress, data: Uint8Array) => Effect.Effect<void, NetworkError>
  /** Transactions waiting for a response now. */
  readonly pending: () => number
}

interface Pending {
  readonly deferred: Deferred.Deferred<readonly [DecodedStunMessage, SocketAddress]>
  readonly key: IntegrityKey | undefined
}

const responseClasses = (cls: number) =>
  cls === StunMessage.StunClass.SuccessResponse || cls === StunMessage.StunClass.ErrorResponse

/** The transaction id as a 6-character map key (two bytes per UTF-16 unit): cheaper than hex on the hot path. */
const tidKey = (id: Uint8Array): string =>
  String.fromCharCode(
    (id[0]! << 8) | id[1]!,
    (id[2]! << 8) | id[3]!,
    (id[4]! << 8) | id[5]!,
    (id[6]! << 8) | id[7]!,
    (id[8]! << 8) | id[9]!,
    (id[10]! << 8) | id[11]!
  )

/** Error answers a server may send without MESSAGE-INTEGRITY (it cannot check credentials yet). */
const unauthenticatedErrors = new Set([400, 401, 420, 438])

const droppedFingerprint = [Metrics.label("reason", "fingerprint")]
const droppedIntegrity = [Metrics.label("reason", "integrity")]
const droppedUnmatched = [Metrics.label("reason", "unmatched")]

const makeClient = (
  transport: "udp" | "tcp",
  sendBytes: (data: Uint8Array, to: SocketAddress) => Effect.Effect<void, NetworkError>,
  remoteOf: (to: SocketAddress) => SocketAddress,
  handlers: Handlers
) => {
  const table = new Map<string, Pending>()

  /** The receive path for one STUN-looking datagram or frame: plain code, no fiber. */
  const receive = (data: Uint8Array, from: SocketAddress): Effect.Effect<void> | void => {
    const decoded = StunMessage.decode(data)
    if (Either.isLeft(decoded)) {
      Metrics.increment(Metrics.stunDecodeFailures)
      return
    }
    const message = decoded.right
    if (responseClasses(message.class)) {
      const key = tidKey(message.transactionId)
      const entry = table.get(key)
      if (entry === undefined) {
        Metrics.increment(Metrics.stunResponsesDropped, droppedUnmatched)
        return
      }
      if (message.fingerprintOffset >= 0 && !StunIntegrity.verifyFingerprint(message)) {
        Metrics.increment(Metrics.stunResponsesDropped, droppedFingerprint)
        return
      }
      if (entry.key !== undefined && !integrityAcceptable(message, entry.key)) {
        Metrics.increment(Metrics.stunResponsesDropped, droppedIntegrity)
        return
      }
      table.delete(key)
      Deferred.unsafeDone(entry.deferred, Exit.succeed([message, from] as const))
      return
    }
    if (message.class === StunMessage.StunClass.Request) return handlers.onRequest?.(message, from)
    return handlers.onIndication?.(message, from)
  }

  const onPacket = (data: Uint8Array, from: SocketAddress): Effect.Effect<void> | void => {
    // RFC 7983: STUN messages start with 0 to 3.
    if (data.length > 0 && data[0]! < 4) return receive(data, from)
    return handlers.onOther?.(data, from)
  }

  /** One transaction: send, retransmit on the schedule, complete on a matching, valid response. */
  const transact = (
    to: SocketAddress,
    method: number,
    bytes: Uint8Array,
    transactionId: Uint8Array,
    key: IntegrityKey | undefined
  ): Effect.Effect<Response, StunTimeout | NetworkError> =>
    Effect.gen(function*() {
      const deferred = yield* Deferred.make<readonly [DecodedStunMessage, SocketAddress]>()
      const id = tidKey(transactionId)
      table.set(id, { deferred, key })
      const start = yield* Clock.currentTimeMillis
      let attempts = 0
      const sendOnce = Effect.suspend(() => {
        attempts++
        if (attempts > 1) Metrics.increment(Metrics.stunRetransmissions)
        return sendBytes(bytes, to)
      })
      const wait = transport === "udp"
        ? Effect.gen(function*() {
          const rto = yield* Rto
          const rc = yield* Rc
          const rm = yield* Rm
          yield* Effect.repeat(sendOnce, retransmissionSchedule(rto, rc))
          yield* Effect.sleep(Duration.times(rto, rm))
        })
        : Effect.zipRight(sendOnce, Effect.flatMap(TcpTimeout, Effect.sleep))
      const timeout = Effect.flatMap(wait, () =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          Metrics.increment(Metrics.stunTimeouts)
          return Effect.fail(
            new StunTimeout({
              method,
              transactionId: StunMessage.transactionIdHex(transactionId),
              remote: TransportAddress.format(remoteOf(to)),
              attempts,
              elapsed: Duration.millis(now - start)
            })
          )
        }))
      // Both racers are explicitly interruptible: a request made in an uninterruptible region (a scope's
      // finalizer, such as a TURN allocation's release) would otherwise make the losing racer, the retransmission
      // timer, impossible to stop, and the transaction would wait out the full schedule after its answer came.
      const [message, from] = yield* Effect.raceFirst(
        Effect.interruptible(Deferred.await(deferred)),
        Effect.interruptible(timeout)
      ).pipe(
        Effect.ensuring(Effect.sync(() => table.delete(id)))
      )
      const now = yield* Clock.currentTimeMillis
      return { message, from, attempts, elapsed: Duration.millis(now - start) }
    })

  const build = (
    cls: StunMessage.StunClass,
    spec: RequestSpec,
    transactionId: Uint8Array,
    extra: ReadonlyArray<StunAttribute.StunAttribute>,
    key: IntegrityKey | undefined,
    fingerprint: boolean
  ) =>
    StunMessage.encode(
      StunMessage.make(cls, spec.method, transactionId, [...(spec.attributes ?? []), ...extra]),
      { integrity: key, fingerprint }
    )

  const errorOf = (to: SocketAddress, method: number, response: Response): StunErrorResponse => {
    const error = StunMessage.find(response.message, "ErrorCode")
    return new StunErrorResponse({
      method,
      code: error?.code ?? 0,
      reason: error?.reason ?? "error response without ERROR-CODE",
      remote: TransportAddress.format(remoteOf(to)),
      transactionId: StunMessage.transactionIdHex(response.message.transactionId),
      response: response.message
    })
  }

  const request = (
    to: SocketAddress,
    spec: RequestSpec,
    options: RequestOptions = {}
  ): Effect.Effect<Response, StunTransactionError> =>
    Effect.gen(function*() {
      const credentials = options.credentials
      const fingerprint = options.fingerprint ?? true
      Metrics.increment(Metrics.stunTransactions)
      const newId = yield* Effect.flatten(TransactionIdSource)
      if (credentials === undefined || credentials._tag === "ShortTerm") {
        const extra = credentials === undefined ? [] : [StunAttribute.username(credentials.username)]
        const bytes = yield* build(StunMessage.StunClass.Request, spec, newId, extra, credentials?.key, fingerprint)
        const response = yield* transact(to, spec.method, bytes, newId, credentials?.key)
        if (response.message.class === StunMessage.StunClass.ErrorResponse) {
          return yield* Effect.fail(errorOf(to, spec.method, response))
        }
        return response
      }
      // Long-term credentials: at most one retry after a 401 and one after a 438 (RFC 8489 §9.2.5).
      let unauthorizedRetries = 1
      let staleRetries = 1
      let id = newId
      while (true) {
        const state = yield* Ref.get(credentials.state)
        const extra: Array<StunAttribute.StunAttribute> = []
        if (state.key !== undefined && state.realm !== undefined && state.nonce !== undefined) {
          extra.push(
            StunAttribute.username(credentials.username),
            StunAttribute.realm(state.realm),
            StunAttribute.nonce(state.nonce)
          )
          if (state.passwordAlgorithms !== undefined) {
            extra.push(state.passwordAlgorithms, StunAttribute.passwordAlgorithm(state.algorithm))
          }
        }
        const bytes = yield* build(StunMessage.StunClass.Request, spec, id, extra, state.key, fingerprint)
        const response = yield* transact(to, spec.method, bytes, id, state.key)
        if (response.message.class !== StunMessage.StunClass.ErrorResponse) return response
        const error = errorOf(to, spec.method, response)
        const retry = (error.code === 401 && unauthorizedRetries-- > 0) || (error.code === 438 && staleRetries-- > 0)
        const realm = StunMessage.find(response.message, "Realm")?.value ?? state.realm
        const nonce = StunMessage.find(response.message, "Nonce")?.value
        if (!retry || realm === undefined || nonce === undefined) return yield* Effect.fail(error)
        const offered = StunMessage.find(response.message, "PasswordAlgorithms")
        const algorithm = offered?.algorithms.some((a) => a.algorithm === StunAttribute.PasswordAlgorithmNumber.Sha256)
          ? StunAttribute.PasswordAlgorithmNumber.Sha256
          : StunAttribute.PasswordAlgorithmNumber.Md5
        const key = realm === state.realm && algorithm === state.algorithm && state.key !== undefined
          ? state.key
          : yield* StunIntegrity.longTermKey(credentials.username, realm, credentials.password, algorithm)
        yield* Ref.set(credentials.state, {
          realm,
          nonce,
          key,
          passwordAlgorithms: offered ?? state.passwordAlgorithms,
          algorithm
        })
        id = yield* Effect.flatten(TransactionIdSource)
      }
    }).pipe(Effect.withSpan("StunTransaction.request", { captureStackTrace: false }))

  const indication = (to: SocketAddress, spec: RequestSpec, options: RequestOptions = {}) =>
    Effect.gen(function*() {
      const id = yield* Effect.flatten(TransactionIdSource)
      const credentials = options.credentials
      const extra = credentials?._tag === "ShortTerm" ? [StunAttribute.username(credentials.username)] : []
      const key = credentials?._tag === "ShortTerm" ? credentials.key : undefined
      const bytes = yield* build(StunMessage.StunClass.Indication, spec, id, extra, key, options.fingerprint ?? true)
      yield* sendBytes(bytes, to)
    })

  const client: StunClient = {
    transport,
    request,
    indication,
    send: (to, data) => sendBytes(data, to),
    pending: () => table.size
  }
  return { client, onPacket }
}

/** A response carries a valid MESSAGE-INTEGRITY(-SHA256), or is an error a server sends before checking. */
const integrityAcceptable = (message: DecodedStunMessage, key: IntegrityKey): boolean => {
  if (Either.isRight(StunIntegrity.verify(message, key))) return true
  if (message.class !== StunMessage.StunClass.ErrorResponse) return false
  if (message.integrityOffset >= 0 || message.integritySha256Offset >= 0) return false
  const code = StunMessage.find(message, "ErrorCode")?.code
  return code !== undefined && unauthenticatedErrors.has(code)
}

/**
 * A transaction client on a UDP socket. It installs itself as the socket's reader.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeUdp = (socket: DatagramSocket, handlers: Handlers = {}): Effect.Effect<StunClient> =>
  Effect.gen(function*() {
    const { client, onPacket } = makeClient("udp", (data, to) => socket.send(data, to), (to) => to, handlers)
    yield* socket.setHandler(onPacket)
    return client
  })

/**
 * A transaction client on a TCP (or TLS) connection: STUN and ChannelData framed on the byte stream (RFC 8489
 * §6.2.2, RFC 8656 §12.5). It installs itself as the connection's reader; a framing error closes the connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTcp = (socket: StreamSocket, handlers: Handlers = {}): Effect.Effect<StunClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const remote: SocketAddress = { family: socket.remote.family, ip: socket.remote.ip, port: socket.remote.port }
    const { client, onPacket } = makeClient("tcp", (data) => socket.write(data), () => remote, handlers)
    const deframer = StreamFraming.makeTurnStreamDeframer()
    let effects: Array<Effect.Effect<void>> | undefined
    const onFrame = (frame: Uint8Array) => {
      const effect = onPacket(frame, remote)
      if (effect !== undefined) (effects ??= []).push(effect)
    }
    yield* socket.setHandler((chunk) => {
      effects = undefined
      if (Either.isLeft(deframer.push(chunk, onFrame))) {
        Metrics.increment(Metrics.stunDecodeFailures)
        return socket.close
      }
      // `onFrame` may have filled it during `push` (TypeScript cannot see that through the closure).
      const pending = effects as Array<Effect.Effect<void>> | undefined
      return pending === undefined ? undefined : Effect.forEach(pending, (e) => e, { discard: true })
    })
    return client
  })
