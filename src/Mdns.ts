/**
 * Multicast DNS names for ICE host candidates (draft-ietf-mmusic-mdns-ice-candidates): a host candidate's IP is
 * hidden behind a random `<uuid>.local` name that only peers on the same link can resolve, with a responder that
 * answers for our names and a resolver for the peer's, on the `Network` service (real multicast with
 * `NodeNetwork`, the simulated link of a site with `VirtualNetwork`).
 *
 * What it implements:
 * - draft §3.1.1 (gathering): `register(ip)` makes a version 4 UUID (RFC 4122 §4.4) from Effect's `Random`, and
 *   `<uuid>.local` becomes the candidate's address; a second `register` of the same IP returns the same name (the draft
 *   reuses a name it registered for the IP). The name is unique by construction, so it is not probed (the draft
 *   lets agents skip probing); it is announced
 *   (RFC 6762 §8.3: two unsolicited responses one second apart) unless `announce: false`.
 * - draft §3.2.1 (processing remote candidates): `resolve(name)` accepts only names made of one UUID-form label
 *   (8-4-4-4-12 hexadecimal digits, any case, any version) and `local`; anything else fails at once with
 *   `InvalidName` (§3.1.1: "The unique name MUST consist of a version 4 UUID as defined in [RFC4122], followed
 *   by '.local'"; any UUID version is accepted on receipt, being lenient costs nothing).
 *   The first query sets the unicast-response ("QU") bit, as the draft and RFC 6762 §5.4 advise.
 * - RFC 6762 §5.1/§5.2 (querying): a one-shot query for both A and AAAA, sent at 0 s and repeated after 1 s, then
 *   after intervals doubling (1 s, 2 s, 4 s… — §5.2: "at least one second" then "at least doubling"), for as long as
 *   the time sent is before the timeout: with the default timeout of 3 s, queries go at 0 s and 1 s and the
 *   resolution fails with `Timeout` at exactly 3 s. Answers are cached for their TTL (at most {@link maxCacheEntries}
 *   names, oldest dropped first); a cached name resolves without a query.
 * - RFC 6762 §6 (responding): a query naming one of our names (QTYPE A or AAAA matching the address family, or ANY;
 *   QCLASS IN or ANY) is answered at once (our records are unique, so no 20–120 ms delay) by a multicast response
 *   with the record, TTL 120 s (§10: host name records) and the cache-flush bit (§10.2). The responder multicasts
 *   even for a QU question (§5.4 allows it, and the querier may be any of the sockets sharing port 5353, so a
 *   unicast answer could reach the wrong one). A record is multicast at most once a second (§6): a query within
 *   that second is not answered, since the earlier answer reached every member of the link. Known-answer
 *   suppression (§7.1) is honoured. A query from a port other than 5353 is a legacy unicast query (§6.7): it is
 *   answered by unicast to its source, with its ID, its question repeated, a TTL of 10 s and no cache-flush bit.
 * - RFC 6762 §10.1 (goodbye): `unregister`, and closing the scope for every name still registered, multicasts the
 *   records with TTL 0; a resolver that receives a goodbye forgets the name at once (rather than one second later).
 * - RFC 6762 §18 and §11: messages with a non-zero OPCODE or RCODE, and responses whose source port is not the mDNS
 *   port, are ignored; multicast queries and responses use ID 0. Malformed datagrams are dropped and counted.
 *
 * Per-datagram work (decode, lookup, answer) is plain code in the socket's handler; only timers (retransmission,
 * announcements) are fibers. The DNS codec is `internal/dns.ts` (RFC 1035 §4.1).
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import {
  Context,
  Data,
  Deferred,
  Duration,
  Effect,
  Either,
  FiberId,
  FiberMap,
  Layer,
  Option,
  Random,
  Schedule
} from "effect"
import * as Dns from "./internal/dns.js"
import * as Network from "./Network.js"
import type { Family, SocketAddress } from "./TransportAddress.js"
import * as TransportAddress from "./TransportAddress.js"

// -----------------------------------------------------------------------------
// constants
// -----------------------------------------------------------------------------

/**
 * The mDNS port: RFC 6762 §3 ("UDP port 5353").
 *
 * @since 0.1.0
 * @category constants
 */
export const mdnsPort = 5353

/**
 * The IPv4 mDNS group: RFC 6762 §3 (224.0.0.251).
 *
 * @since 0.1.0
 * @category constants
 */
export const ipv4Group = "224.0.0.251"

/**
 * The IPv6 mDNS group: RFC 6762 §3 (FF02::FB, link-local scope).
 *
 * @since 0.1.0
 * @category constants
 */
export const ipv6Group = "ff02::fb"

/**
 * TTL of our A/AAAA records: RFC 6762 §10 ("resource records … that include a host name … 120 seconds").
 *
 * @since 0.1.0
 * @category constants
 */
export const recordTtl: Duration.Duration = Duration.seconds(120)

/**
 * The most a legacy unicast response's TTL may be: RFC 6762 §6.7 ("SHOULD NOT be greater than ten seconds").
 *
 * @since 0.1.0
 * @category constants
 */
export const legacyUnicastTtl: Duration.Duration = Duration.seconds(10)

/**
 * How long `resolve` waits for an answer when not told: 3 s (queries at 0 s and 1 s).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultResolveTimeout: Duration.Duration = Duration.seconds(3)

/**
 * The interval between the first two queries, doubling after: RFC 6762 §5.2 ("at least one second").
 *
 * @since 0.1.0
 * @category constants
 */
export const firstQueryInterval: Duration.Duration = Duration.seconds(1)

/**
 * The interval between the two announcements of a new name: RFC 6762 §8.3 ("one second apart").
 *
 * @since 0.1.0
 * @category constants
 */
export const announcementInterval: Duration.Duration = Duration.seconds(1)

/**
 * The least time between two multicasts of one record: RFC 6762 §6 ("MUST NOT … multicast a record on a given
 * interface until at least one second has elapsed since the last time that record was multicast").
 *
 * @since 0.1.0
 * @category constants
 */
export const minMulticastInterval: Duration.Duration = Duration.seconds(1)

/**
 * The most names the resolver's cache holds; the oldest is dropped first.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxCacheEntries = 256

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * Why a name did not resolve: `Timeout` (no answer before the timeout; `queries` says how many were sent) or
 * `InvalidName` (not `<uuid>.local`; nothing was sent).
 *
 * @since 0.1.0
 * @category errors
 */
export class MdnsResolveError extends Data.TaggedError("MdnsResolveError")<{
  readonly name: string
  readonly reason: "Timeout" | "InvalidName"
  readonly queries: number
}> {
  override get message(): string {
    return this.reason === "Timeout"
      ? `mDNS: no answer for ${this.name} after ${this.queries} ${this.queries === 1 ? "query" : "queries"}`
      : `mDNS: ${JSON.stringify(this.name)} is not a <uuid>.local name`
  }
}

/**
 * Options of a resolution.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolveOptions {
  /** How long to wait for an answer (default: the engine's `resolveTimeout`, {@link defaultResolveTimeout}). */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Options of an engine. The defaults are the standard ones: IPv4, 224.0.0.251, port 5353.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The family of the multicast socket (default IPv4). Records of either family are served on it. */
  readonly family?: Family | undefined
  /** The group to join (default {@link ipv4Group} or {@link ipv6Group}). */
  readonly group?: string | undefined
  /** The port (default {@link mdnsPort}). */
  readonly port?: number | undefined
  /** The interface that joins the group and sends to it, by address (e.g. `127.0.0.1`); default: the system's. */
  readonly interfaceAddress?: string | undefined
  /** The default timeout of `resolve` (default {@link defaultResolveTimeout}). */
  readonly resolveTimeout?: Duration.DurationInput | undefined
  /** Announce each new name (RFC 6762 §8.3; default true). */
  readonly announce?: boolean | undefined
}

/**
 * The engine: registers our names and answers for them, resolves the peer's.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * The `<uuid>.local` name of a local IP, made (and announced) on first use and answered for until `unregister`
   * or the end of the engine's scope. An IPv6 zone (`%eth0`) is dropped; an argument that is not an IP address is a
   * defect.
   */
  readonly register: (ip: string) => Effect.Effect<string>
  /** Stops answering for a name of ours and multicasts its goodbye (TTL 0); unknown names are ignored. */
  readonly unregister: (name: string) => Effect.Effect<void>
  /** The IP of a `<uuid>.local` name: from the cache, or by querying the link. */
  readonly resolve: (name: string, options?: ResolveOptions) => Effect.Effect<string, MdnsResolveError>
  /** Our names and their IPs. */
  readonly registered: Effect.Effect<ReadonlyMap<string, string>>
  /** Datagrams on the mDNS socket that did not decode as DNS messages. */
  readonly malformed: () => number
}

/**
 * The mDNS engine as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class Mdns extends Context.Tag("effect-ice/Mdns")<Mdns, Service>() {}

// -----------------------------------------------------------------------------
// names
// -----------------------------------------------------------------------------

const uuidName = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.local$/i

/**
 * Whether `name` is an ICE mDNS name: one UUID-form label (8-4-4-4-12 hexadecimal digits, any case) and `local`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isMdnsName = (name: string): boolean => uuidName.test(name)

const hex4 = (n: number): string => n.toString(16).padStart(4, "0")

/**
 * A random `<uuid>.local` name: a version 4 UUID (RFC 4122 §4.4: version bits 0100, variant bits 10) in lowercase,
 * from Effect's `Random`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const randomName: Effect.Effect<string> = Effect.map(
  Effect.all(Array.from({ length: 8 }, () => Random.nextIntBetween(0, 0x10000))),
  (w) =>
    `${hex4(w[0]!)}${hex4(w[1]!)}-${hex4(w[2]!)}-${hex4((w[3]! & 0x0fff) | 0x4000)}-${
      hex4((w[4]! & 0x3fff) | 0x8000)
    }-${hex4(w[5]!)}${hex4(w[6]!)}${hex4(w[7]!)}.local`
)

// -----------------------------------------------------------------------------
// the engine
// -----------------------------------------------------------------------------

interface Owned {
  readonly name: string
  readonly ip: string
  readonly family: Family
}

const recordOf = (owned: Owned, ttl: number, cacheFlush: boolean): Dns.ResourceRecord => ({
  name: owned.name,
  type: owned.family === "IPv4" ? Dns.RecordType.A : Dns.RecordType.AAAA,
  class: Dns.classIn,
  cacheFlush,
  ttl,
  address: owned.ip
})

/** A multicast response (RFC 6762 §18: ID 0, QR and AA set, no questions). */
const multicastResponse = (answers: ReadonlyArray<Dns.ResourceRecord>): Uint8Array =>
  Dns.encode({
    id: 0,
    flags: Dns.Flags.QR | Dns.Flags.AA,
    questions: [],
    answers,
    authorities: [],
    additionals: []
  })

const classAny = 255

/**
 * Makes an engine for the lifetime of the scope: binds the mDNS multicast socket (address reuse, so other mDNS
 * software on the host keeps working) and starts answering. Closing the scope sends a goodbye for every name still
 * registered and closes the socket.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, Network.NetworkError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const family = options.family ?? "IPv4"
    const group = options.group ?? (family === "IPv4" ? ipv4Group : ipv6Group)
    const port = options.port ?? mdnsPort
    const defaultTimeout = Duration.decode(options.resolveTimeout ?? defaultResolveTimeout)
    const announce = options.announce ?? true
    const ttl = Duration.toSeconds(recordTtl)
    const minInterval = Duration.toMillis(minMulticastInterval)
    const legacyTtl = Duration.toSeconds(legacyUnicastTtl)
    const groupAddress: SocketAddress = { family, ip: group, port }
    const clock = yield* Effect.clock

    const socket = yield* network.bindMulticastUdp({
      group,
      port,
      family,
      ...(options.interfaceAddress === undefined ? {} : { interfaceAddress: options.interfaceAddress })
    })

    /** Our names, by lowercased name. */
    const owned = new Map<string, Owned>()
    /** Our names by canonical IP. */
    const byIp = new Map<string, string>()
    /** When each of our names was last multicast (ms), for the one-second rule of RFC 6762 §6. */
    const lastMulticast = new Map<string, number>()
    /** Resolved names, by lowercased name. */
    const cache = new Map<string, { readonly ip: string; readonly expiresAt: number }>()
    /** Pending resolutions, by lowercased name. */
    const waiters = new Map<string, Set<Deferred.Deferred<string>>>()
    let malformed = 0

    const remember = (key: string, ip: string, ttlSeconds: number): void => {
      cache.delete(key)
      cache.set(key, { ip, expiresAt: clock.unsafeCurrentTimeMillis() + ttlSeconds * 1000 })
      if (cache.size > maxCacheEntries) cache.delete(cache.keys().next().value!)
      const pending = waiters.get(key)
      if (pending === undefined) return
      waiters.delete(key)
      for (const deferred of pending) Deferred.unsafeDone(deferred, Effect.succeed(ip))
    }

    const onResponse = (message: Dns.Message): void => {
      for (const records of [message.answers, message.additionals]) {
        for (const record of records) {
          if (!("address" in record) || record.class !== Dns.classIn || !isMdnsName(record.name)) continue
          const key = record.name.toLowerCase()
          if (record.ttl === 0) cache.delete(key)
          else remember(key, record.address, record.ttl)
        }
      }
    }

    const onQuery = (message: Dns.Message, remote: SocketAddress): void => {
      const legacy = remote.port !== port
      const answered: Array<Owned> = []
      const questions: Array<Dns.Question> = []
      for (const question of message.questions) {
        if (question.class !== Dns.classIn && question.class !== classAny) continue
        const entry = owned.get(question.name.toLowerCase())
        if (entry === undefined) continue
        const type = entry.family === "IPv4" ? Dns.RecordType.A : Dns.RecordType.AAAA
        if (question.type !== type && question.type !== Dns.RecordType.ANY) continue
        questions.push(question)
        if (answered.includes(entry)) continue
        // Known-answer suppression (RFC 6762 §7.1): the querier already holds the record for at least half its TTL.
        const known = !legacy && message.answers.some((record) =>
          "address" in record && record.type === type && record.address === entry.ip &&
          record.name.toLowerCase() === entry.name && record.ttl >= ttl / 2
        )
        if (!known) answered.push(entry)
      }
      if (answered.length === 0) return
      if (legacy) {
        const reply = Dns.encode({
          id: message.id,
          flags: Dns.Flags.QR | Dns.Flags.AA,
          questions,
          answers: answered.map((entry) => recordOf(entry, legacyTtl, false)),
          authorities: [],
          additionals: []
        })
        socket.unsafeSend(reply, remote)
        return
      }
      // RFC 6762 §6: a record is not multicast again until one second has passed since it last was.
      const at = clock.unsafeCurrentTimeMillis()
      const fresh = answered.filter((entry) => at - (lastMulticast.get(entry.name) ?? -Infinity) >= minInterval)
      if (fresh.length === 0) return
      for (const entry of fresh) lastMulticast.set(entry.name, at)
      socket.unsafeSend(multicastResponse(fresh.map((entry) => recordOf(entry, ttl, true))), groupAddress)
    }

    yield* socket.setHandler((data, remote) => {
      const decoded = Dns.decode(data)
      if (Either.isLeft(decoded)) {
        malformed++
        return
      }
      const message = decoded.right
      // RFC 6762 §18.3, §18.11: a non-zero OPCODE or RCODE is silently ignored.
      if ((message.flags & 0x7800) !== 0 || (message.flags & 0x000f) !== 0) return
      if ((message.flags & Dns.Flags.QR) === 0) onQuery(message, remote)
      // RFC 6762 §11 / §6: responses must come from the mDNS port.
      else if (remote.port === port) onResponse(message)
    })

    const sendQuietly = (bytes: Uint8Array) =>
      socket.send(bytes, groupAddress).pipe(
        Effect.catchAll((error) => Effect.logDebug(`mDNS: send failed: ${error.message}`))
      )

    const goodbye = (entries: ReadonlyArray<Owned>) =>
      entries.length === 0 ? Effect.void : sendQuietly(multicastResponse(entries.map((e) => recordOf(e, 0, true))))

    const announcers = yield* FiberMap.make<string>()
    // Runs before the socket closes (finalizers run in reverse order).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const entries = [...owned.values()]
        owned.clear()
        byIp.clear()
        return goodbye(entries)
      })
    )

    const register = (ip: string): Effect.Effect<string> =>
      Effect.gen(function*() {
        const percent = ip.indexOf("%") // an IPv6 zone (fe80::1%eth0) is not part of the record
        const canonical = TransportAddress.canonicalIp(percent < 0 ? ip : ip.slice(0, percent))
        if (Option.isNone(canonical)) {
          return yield* Effect.dieMessage(`Mdns.register: ${JSON.stringify(ip)} is not an IP`)
        }
        const existing = byIp.get(canonical.value.ip)
        if (existing !== undefined) return existing
        let name = yield* randomName
        while (owned.has(name)) name = yield* randomName
        const entry: Owned = { name, ip: canonical.value.ip, family: canonical.value.family }
        owned.set(name, entry)
        byIp.set(entry.ip, name)
        if (announce) {
          const announcement = multicastResponse([recordOf(entry, ttl, true)])
          yield* FiberMap.run(
            announcers,
            name,
            Effect.repeat(
              Effect.zipRight(
                Effect.sync(() => lastMulticast.set(name, clock.unsafeCurrentTimeMillis())),
                sendQuietly(announcement)
              ),
              Schedule.spaced(announcementInterval).pipe(Schedule.intersect(Schedule.recurs(1)))
            )
          )
        }
        return name
      }).pipe(Effect.withSpan("Mdns.register", { captureStackTrace: false }))

    const unregister = (name: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        const key = name.toLowerCase()
        const entry = owned.get(key)
        if (entry === undefined) return Effect.void
        owned.delete(key)
        byIp.delete(entry.ip)
        lastMulticast.delete(key)
        return Effect.zipRight(FiberMap.remove(announcers, key), goodbye([entry]))
      })

    /** How many retransmissions fit before the timeout: the k ≥ 1 with (2^k − 1) × interval < timeout. */
    const retransmissions = (timeout: Duration.Duration): number => {
      const interval = Duration.toMillis(firstQueryInterval)
      const limit = Duration.toMillis(timeout)
      let n = 0
      while (n < 30 && (2 ** (n + 1) - 1) * interval < limit) n++
      return n
    }

    const resolve = (name: string, resolveOptions?: ResolveOptions): Effect.Effect<string, MdnsResolveError> =>
      Effect.suspend(() => {
        if (!isMdnsName(name)) return Effect.fail(new MdnsResolveError({ name, reason: "InvalidName", queries: 0 }))
        const key = name.toLowerCase()
        const hit = cache.get(key)
        if (hit !== undefined) {
          if (hit.expiresAt > clock.unsafeCurrentTimeMillis()) return Effect.succeed(hit.ip)
          cache.delete(key)
        }
        const timeout = resolveOptions?.timeout === undefined ? defaultTimeout : Duration.decode(resolveOptions.timeout)
        const deferred = Deferred.unsafeMake<string>(FiberId.none)
        const pending = waiters.get(key)
        if (pending === undefined) waiters.set(key, new Set([deferred]))
        else pending.add(deferred)
        let queries = 0
        const query = Effect.suspend(() => {
          const bytes = Dns.encode({
            id: 0,
            flags: 0,
            // QU on the first query only (RFC 6762 §5.4; draft §3.2.1 step 3).
            questions: [Dns.RecordType.A, Dns.RecordType.AAAA].map((type) => ({
              name: key,
              type,
              class: Dns.classIn,
              unicastResponse: queries === 0
            })),
            answers: [],
            authorities: [],
            additionals: []
          })
          queries++
          return sendQuietly(bytes)
        })
        const schedule = Schedule.exponential(firstQueryInterval, 2).pipe(
          Schedule.intersect(Schedule.recurs(retransmissions(timeout)))
        )
        return Deferred.await(deferred).pipe(
          Effect.race(Effect.zipRight(Effect.repeat(query, schedule), Effect.never)),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new MdnsResolveError({ name, reason: "Timeout", queries })
          }),
          Effect.ensuring(Effect.sync(() => {
            const set = waiters.get(key)
            set?.delete(deferred)
            if (set?.size === 0) waiters.delete(key)
          }))
        )
      }).pipe(Effect.withSpan("Mdns.resolve", { captureStackTrace: false, attributes: { name } }))

    const service: Service = {
      register,
      unregister,
      resolve,
      registered: Effect.sync(() => new Map([...owned.values()].map((e) => [e.name, e.ip]))),
      malformed: () => malformed
    }
    return service
  })

/**
 * The engine as a layer, for the lifetime of the layer's scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<Mdns, Network.NetworkError, Network.Network> =>
  Layer.scoped(Mdns, make(options))
