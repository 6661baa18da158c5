import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Either, Exit, FastCheck, Fiber, Option, Scope, TestClock } from "effect"
import * as Dns from "../src/internal/dns.js"
import * as Mdns from "../src/Mdns.js"
import * as NatBehavior from "../src/NatBehavior.js"
import * as Network from "../src/Network.js"
import * as NodeNetwork from "../src/NodeNetwork.js"
import * as TransportAddress from "../src/TransportAddress.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

const hex = (text: string): Uint8Array =>
  Uint8Array.from(text.replace(/\s+/g, "").match(/../g)!.map((h) => parseInt(h, 16)))
const toHex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
const ascii = (text: string): string => toHex(Uint8Array.from(text, (c) => c.charCodeAt(0)))

const decodeOk = (bytes: Uint8Array): Dns.Message => {
  const result = Dns.decode(bytes)
  if (Either.isLeft(result)) assert.fail(`expected a message, got ${result.left.reason} at ${result.left.offset}`)
  return result.right
}

const decodeError = (bytes: Uint8Array): Dns.DnsDecodeError => {
  const result = Dns.decode(bytes)
  if (Either.isRight(result)) assert.fail("expected a decode error")
  return result.left
}

const uuid = "1f3e5a7c-0b2d-4e6f-8a9b-0c1d2e3f4a5b"
const uuidLocal = `${uuid}.local`
/** `<uuid>.local` on the wire: a 36-byte label, the 5-byte label "local", the root. */
const uuidLocalWire = "24" + ascii(uuid) + "05 6c6f63616c 00"

describe("DNS codec (RFC 1035 §4.1, RFC 6762 §18)", () => {
  it("encodes an mDNS query for <uuid>.local A with the QU bit, byte by byte", () => {
    const bytes = Dns.encode({
      id: 0,
      flags: 0,
      questions: [{ name: uuidLocal, type: Dns.RecordType.A, class: Dns.classIn, unicastResponse: true }],
      answers: [],
      authorities: [],
      additionals: []
    })
    const expected = hex(
      "0000 0000 0001 0000 0000 0000" + // ID 0, flags 0, QDCOUNT 1
        uuidLocalWire +
        "0001 8001" // QTYPE A, QCLASS IN with the unicast-response bit
    )
    assert.strictEqual(bytes.length, 12 + 1 + 36 + 1 + 5 + 1 + 4)
    assert.strictEqual(toHex(bytes), toHex(expected))
    assert.deepStrictEqual(decodeOk(bytes).questions, [
      { name: uuidLocal, type: 1, class: 1, unicastResponse: true }
    ])
  })

  it("encodes a response with A (cache-flush, TTL 120) and AAAA records, byte by byte", () => {
    const bytes = Dns.encode({
      id: 0,
      flags: Dns.Flags.QR | Dns.Flags.AA,
      questions: [],
      answers: [
        { name: uuidLocal, type: Dns.RecordType.A, class: 1, cacheFlush: true, ttl: 120, address: "192.168.1.2" },
        { name: "a.local", type: Dns.RecordType.AAAA, class: 1, cacheFlush: false, ttl: 0, address: "fe80::1" }
      ],
      authorities: [],
      additionals: []
    })
    const expected = "0000 8400 0000 0002 0000 0000" +
      uuidLocalWire + "0001 8001 00000078 0004 c0a80102" +
      "01 61 05 6c6f63616c 00" + "001c 0001 00000000 0010 fe800000000000000000000000000001"
    assert.strictEqual(toHex(bytes), toHex(hex(expected)))
    const message = decodeOk(bytes)
    assert.strictEqual(message.flags, 0x8400)
    assert.deepStrictEqual(message.answers, [
      { name: uuidLocal, class: 1, cacheFlush: true, ttl: 120, type: 1, address: "192.168.1.2" },
      { name: "a.local", class: 1, cacheFlush: false, ttl: 0, type: 28, address: "fe80::1" }
    ])
  })

  it("follows compression pointers (RFC 1035 §4.1.4): a whole name, and a label followed by a pointer", () => {
    const bytes = hex(
      "0000 8400 0000 0003 0000 0000" +
        // offset 12: x.local A 10.0.0.1 TTL 60
        "01 78 05 6c6f63616c 00" + "0001 0001 0000003c 0004 0a000001" +
        // offset 35: pointer to offset 12 (x.local) A 10.0.0.2
        "c00c" + "0001 0001 0000003c 0004 0a000002" +
        // offset 51: "y" then a pointer to offset 14 ("local") AAAA ::1
        "01 79 c00e" + "001c 8001 00000078 0010 00000000000000000000000000000001"
    )
    const message = decodeOk(bytes)
    assert.deepStrictEqual(message.answers.map((r) => [r.name, "address" in r ? r.address : ""]), [
      ["x.local", "10.0.0.1"],
      ["x.local", "10.0.0.2"],
      ["y.local", "::1"]
    ])
  })

  it("keeps other record types as raw RDATA and escapes dots inside labels", () => {
    const bytes = hex(
      "0000 8400 0000 0001 0000 0000" +
        "03 612e62 05 6c6f63616c 00" + "0010 0001 00001194 0003 026869"
    )
    const [record] = decodeOk(bytes).answers
    assert.strictEqual(record!.name, "a\\.b.local")
    assert.strictEqual(record!.type, Dns.RecordType.TXT)
    assert.isTrue("rdata" in record! && toHex(record.rdata) === "026869")
    assert.strictEqual(toHex(Dns.encode(decodeOk(bytes))), toHex(bytes))
  })

  describe("malformed input is a typed error", () => {
    it("truncated header, question, name, record and RDATA", () => {
      assert.deepInclude(decodeError(hex("0000 0000 00")), { reason: "Truncated", offset: 5 })
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000")), { reason: "Truncated", offset: 12 })
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 05 6c6f")), { reason: "Truncated", offset: 12 })
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 00 0001")), { reason: "Truncated", offset: 13 })
      assert.deepInclude(decodeError(hex("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078")), {
        reason: "Truncated",
        offset: 13
      })
      assert.deepInclude(decodeError(hex("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0004 c0a8")), {
        reason: "Truncated",
        offset: 21
      })
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 c0")), { reason: "Truncated", offset: 12 })
    })

    it("pointer loops and forward pointers", () => {
      // A pointer to itself.
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 c00c 0001 0001")), {
        reason: "BadPointer",
        offset: 12
      })
      // A forward pointer.
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 c010 0001 0001 00")), {
        reason: "BadPointer",
        offset: 12
      })
      // "a" then a pointer back to "a": a loop through a label, caught at the second visit of the pointer.
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 01 61 c00c 0001 0001")), {
        reason: "BadPointer",
        offset: 14
      })
      // A second name pointing into a loop: offset 18 "b" -> 14, which points at 12 "a" -> 14 again.
      const loop = hex("0000 0000 0002 0000 0000 0000 01 61 c00c 0001 0001 01 62 c00c 0001 0001")
      assert.strictEqual(decodeError(loop).reason, "BadPointer")
    })

    it("at most 127 pointers per name", () => {
      const pointer = (target: number) => (0xc000 | target).toString(16).padStart(4, "0")
      // A TXT record whose RDATA (from offset 23) is a root label and a chain of n pointers, each to the one before;
      // then an A record whose name points at the last pointer: n + 1 hops.
      const chain = (n: number) => {
        const rdata = ["00"]
        for (let i = 0; i < n; i++) rdata.push(pointer(i === 0 ? 23 : 24 + 2 * (i - 1)))
        return hex(
          "0000 8400 0000 0002 0000 0000" + "00 0010 0001 00000078" + (1 + 2 * n).toString(16).padStart(4, "0") +
            rdata.join("") + pointer(24 + 2 * (n - 1)) + "0001 0001 00000078 0004 0a000001"
        )
      }
      assert.deepInclude(decodeOk(chain(126)).answers[1], { name: "", address: "10.0.0.1" })
      assert.strictEqual(decodeError(chain(127)).reason, "TooManyPointers")
      assert.strictEqual(decodeError(chain(1000)).reason, "TooManyPointers")
    })

    it("labels over 63 bytes (label types 01 and 10) and names over 255 bytes", () => {
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 40" + "61".repeat(64) + "00 0001 0001")), {
        reason: "BadLabelType",
        offset: 12
      })
      assert.deepInclude(decodeError(hex("0000 0000 0001 0000 0000 0000 80 00 0001 0001")), {
        reason: "BadLabelType",
        offset: 12
      })
      const label63 = "3f" + "61".repeat(63)
      // 3 × 64 + 62 + 1 = 255 bytes: the longest name.
      const longest = hex("0000 0000 0001 0000 0000 0000" + label63.repeat(3) + "3d" + "62".repeat(61) + "00 0001 0001")
      assert.strictEqual(decodeOk(longest).questions[0]!.name.length, 3 * 64 + 61)
      const tooLong = hex("0000 0000 0001 0000 0000 0000" + label63.repeat(4) + "00 0001 0001")
      assert.deepInclude(decodeError(tooLong), { reason: "NameTooLong", offset: 12 + 3 * 64 })
    })

    it("A and AAAA records with the wrong RDATA length", () => {
      assert.deepInclude(decodeError(hex("0000 8400 0000 0001 0000 0000 00 0001 0001 00000078 0005 0102030405")), {
        reason: "BadRdata",
        offset: 21
      })
      assert.strictEqual(
        decodeError(hex("0000 8400 0000 0001 0000 0000 00 001c 0001 00000078 0004 01020304")).reason,
        "BadRdata"
      )
    })

    it("encode refuses names that cannot be encoded", () => {
      const query = (name: string) => () =>
        Dns.encode({
          id: 0,
          flags: 0,
          questions: [{ name, type: 1, class: 1, unicastResponse: false }],
          answers: [],
          authorities: [],
          additionals: []
        })
      assert.throws(query("a".repeat(64) + ".local"), RangeError)
      assert.throws(query("a..local"), RangeError)
      assert.throws(query(Array.from({ length: 5 }, () => "a".repeat(60)).join(".")), RangeError)
      assert.doesNotThrow(query("a".repeat(63) + ".local"))
    })
  })

  describe("properties", () => {
    it.prop(
      "any bytes decode to a message or a typed error, never a throw",
      [FastCheck.uint8Array({ maxLength: 600 })],
      ([bytes]) => {
        const result = Dns.decode(bytes)
        assert.isTrue(Either.isRight(result) || result.left._tag === "DnsDecodeError")
      }
    )

    it.prop(
      "any bytes after a header with counts decode without throwing",
      [
        FastCheck.array(FastCheck.integer({ min: 0, max: 6 }), { minLength: 4, maxLength: 4 }),
        FastCheck.uint8Array({ maxLength: 400 }),
        FastCheck.array(FastCheck.integer({ min: 0, max: 399 }), { maxLength: 10 })
      ],
      ([counts, body, pointerAt]) => {
        const bytes = new Uint8Array(12 + body.length)
        bytes.set(body, 12)
        counts.forEach((n, i) => (bytes[5 + 2 * i] = n))
        // Sprinkle pointers, so that compression paths are exercised.
        for (const at of pointerAt) if (12 + at + 1 < bytes.length) bytes[12 + at] = 0xc0
        const result = Dns.decode(bytes)
        assert.isTrue(Either.isRight(result) || result.left._tag === "DnsDecodeError")
      }
    )

    const label = FastCheck.stringMatching(/^[a-zA-Z0-9 _\-.\\é]{1,12}$/).map((text) =>
      text.replace(/[.\\]/g, (m) => "\\" + m)
    )
    const name = FastCheck.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."))
    const ipv6 = FastCheck.uint8Array({ minLength: 16, maxLength: 16 }).map((bytes) =>
      TransportAddress.formatIPv6(bytes)
    )
    const base = {
      name,
      class: FastCheck.integer({ min: 0, max: 0x7fff }),
      cacheFlush: FastCheck.boolean(),
      ttl: FastCheck.integer({ min: 0, max: 0xffffffff })
    }
    const record: FastCheck.Arbitrary<Dns.ResourceRecord> = FastCheck.oneof(
      FastCheck.record({ ...base, type: FastCheck.constant(Dns.RecordType.A), address: FastCheck.ipV4() }),
      FastCheck.record({ ...base, type: FastCheck.constant(Dns.RecordType.AAAA), address: ipv6 }),
      FastCheck.record({
        ...base,
        type: FastCheck.integer({ min: 0, max: 0xffff }).filter((t) => t !== 1 && t !== 28),
        rdata: FastCheck.uint8Array({ maxLength: 40 })
      })
    )
    const question: FastCheck.Arbitrary<Dns.Question> = FastCheck.record({
      name,
      type: FastCheck.integer({ min: 0, max: 0xffff }),
      class: FastCheck.integer({ min: 0, max: 0x7fff }),
      unicastResponse: FastCheck.boolean()
    })
    const message: FastCheck.Arbitrary<Dns.Message> = FastCheck.record({
      id: FastCheck.integer({ min: 0, max: 0xffff }),
      flags: FastCheck.integer({ min: 0, max: 0xffff }),
      questions: FastCheck.array(question, { maxLength: 3 }),
      answers: FastCheck.array(record, { maxLength: 3 }),
      authorities: FastCheck.array(record, { maxLength: 2 }),
      additionals: FastCheck.array(record, { maxLength: 2 })
    })

    it.prop("decode(encode(message)) is the message", [message], ([m]) => {
      assert.deepStrictEqual(decodeOk(Dns.encode(m)), m)
    })
  })
})

// -----------------------------------------------------------------------------
// the simulated link
// -----------------------------------------------------------------------------

/** Two hosts on one LAN (2 ms and 3 ms access links), and one behind another NAT with the same private IP as a. */
const lan = Effect.gen(function*() {
  const world = yield* VirtualNetwork.make({ trace: true, logLimit: 10_000 })
  yield* world.addSite({ name: "home", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.1"] })
  yield* world.addSite({ name: "away", nat: NatBehavior.fullCone, externalAddresses: ["203.0.113.2"] })
  const a = yield* world.addHost({ name: "a", site: "home", addresses: ["192.168.1.2"], latency: "2 millis" })
  const b = yield* world.addHost({ name: "b", site: "home", addresses: ["192.168.1.3"], latency: "3 millis" })
  const c = yield* world.addHost({ name: "c", site: "away", addresses: ["192.168.1.2"], latency: "2 millis" })
  return { world, a, b, c }
})

const mdnsOn = (host: VirtualNetwork.Host, options?: Mdns.Options) =>
  Mdns.make(options).pipe(Effect.provideService(Network.Network, host.network))

const now = Clock.currentTimeMillis

const sentBy = (world: VirtualNetwork.World, host: string) =>
  Effect.map(world.trace, (events) => events.filter((e) => e.event === "sent" && e.where === host).map((e) => e.at))

const uuidV4Local = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local$/

describe("Mdns on VirtualNetwork", () => {
  it.scoped("B resolves A's name by a query, in exactly one round trip (5 ms + 5 ms)", () =>
    Effect.gen(function*() {
      const { a, b, world } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      assert.match(name, uuidV4Local)
      assert.isTrue(Mdns.isMdnsName(name))
      assert.strictEqual(yield* mdnsA.register("192.168.1.2"), name, "one name per IP (draft §3.1.1)")
      const mdnsB = yield* mdnsOn(b)
      const fiber = yield* Effect.fork(mdnsB.resolve(name.toUpperCase()))
      yield* TestClock.adjust("9 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "192.168.1.2")
      assert.deepStrictEqual(yield* sentBy(world, "b"), [0])
      assert.deepStrictEqual(yield* sentBy(world, "a"), [5])
      // Cached for 120 s: no query.
      assert.strictEqual(yield* mdnsB.resolve(name), "192.168.1.2")
      yield* TestClock.adjust(Duration.millis(119_999))
      assert.strictEqual(yield* mdnsB.resolve(name), "192.168.1.2")
      assert.deepStrictEqual(yield* sentBy(world, "b"), [0])
      // Expired at 120 s after the answer (10 ms): a new query goes out.
      yield* TestClock.adjust("1 millis")
      const again = yield* Effect.fork(mdnsB.resolve(name))
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(yield* Fiber.join(again), "192.168.1.2")
      assert.deepStrictEqual(yield* sentBy(world, "b"), [0, 120_010])
    }))

  it.scoped("the query asks for A and AAAA with QU; the answer has TTL 120 and the cache-flush bit", () =>
    Effect.gen(function*() {
      const { a, b } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      const listener = yield* b.network.bindMulticastUdp({ group: Mdns.ipv4Group, port: Mdns.mdnsPort })
      const seen: Array<{ from: string; message: Dns.Message }> = []
      yield* listener.setHandler((data, remote) => {
        seen.push({ from: TransportAddress.format(remote), message: decodeOk(data) })
      })
      const mdnsB = yield* mdnsOn(b)
      const fiber = yield* Effect.fork(mdnsB.resolve(name))
      yield* TestClock.adjust("10 millis")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(seen.map((s) => [s.from, s.message.flags]), [
        ["192.168.1.3:5353", 0],
        ["192.168.1.2:5353", 0x8400]
      ])
      assert.deepStrictEqual(seen[0]!.message.questions, [
        { name, type: 1, class: 1, unicastResponse: true },
        { name, type: 28, class: 1, unicastResponse: true }
      ])
      assert.deepStrictEqual(seen[1]!.message.answers, [
        { name, class: 1, cacheFlush: true, ttl: 120, type: 1, address: "192.168.1.2" }
      ])
    }))

  it.scoped("announcements at 0 s and 1 s fill the peer's cache", () =>
    Effect.gen(function*() {
      const { a, b, world } = yield* lan
      const mdnsA = yield* mdnsOn(a)
      const mdnsB = yield* mdnsOn(b)
      const name = yield* mdnsA.register("192.168.1.2")
      yield* TestClock.adjust("5 millis")
      assert.strictEqual(yield* mdnsB.resolve(name), "192.168.1.2")
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual(yield* sentBy(world, "a"), [0, 1000])
      assert.deepStrictEqual(yield* sentBy(world, "b"), [])
    }))

  it.scoped("a host behind another NAT cannot resolve: Timeout at exactly 3 s, after queries at 0 s and 1 s", () =>
    Effect.gen(function*() {
      const { a, c, world } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      const mdnsC = yield* mdnsOn(c)
      const fiber = yield* Effect.fork(Effect.either(mdnsC.resolve(name)))
      yield* TestClock.adjust("2999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(fiber)
      assert.isTrue(Either.isLeft(result))
      assert.deepInclude(Either.getLeft(result).pipe(Option.getOrThrow), { name, reason: "Timeout", queries: 2 })
      assert.deepStrictEqual(yield* sentBy(world, "c"), [0, 1000])
      assert.deepStrictEqual(yield* sentBy(world, "a"), [], "a never heard c")
      const stats = yield* world.stats
      assert.strictEqual(stats.delivered, 2, "only c's own sockets got its queries (loopback)")
    }))

  it.scoped("with a 10 s timeout, queries go at 0, 1, 3 and 7 s", () =>
    Effect.gen(function*() {
      const { b, world } = yield* lan
      const mdnsB = yield* mdnsOn(b, { resolveTimeout: "10 seconds" })
      const name = "0f0e0d0c-0b0a-4908-8706-050403020100.local"
      const fiber = yield* Effect.fork(Effect.flip(mdnsB.resolve(name)))
      yield* TestClock.adjust("10 seconds")
      const error = yield* Fiber.join(fiber)
      assert.deepInclude(error, { reason: "Timeout", queries: 4 })
      assert.deepStrictEqual(yield* sentBy(world, "b"), [0, 1000, 3000, 7000])
      // A per-call timeout wins over the engine's.
      const short = yield* Effect.fork(Effect.flip(mdnsB.resolve(name, { timeout: "1 second" })))
      yield* TestClock.adjust("1 second")
      assert.deepInclude(yield* Fiber.join(short), { reason: "Timeout", queries: 1 })
    }))

  it.effect("names that are not <uuid>.local fail at once with InvalidName", () =>
    Effect.scoped(Effect.gen(function*() {
      const { b, world } = yield* lan
      const mdnsB = yield* mdnsOn(b)
      for (
        const name of [
          "foo.local",
          "host.example.com",
          uuid,
          `${uuid}.local.`,
          `${uuid}.example`,
          `x.${uuid}.local`,
          `${uuid}.local.local`,
          "1f3e5a7c-0b2d-4e6f-8a9b-0c1d2e3f4a5g.local",
          ""
        ]
      ) {
        const error = yield* Effect.flip(mdnsB.resolve(name))
        assert.deepInclude(error, { name, reason: "InvalidName", queries: 0 }, name)
      }
      assert.deepStrictEqual(yield* sentBy(world, "b"), [])
    })))

  it.scoped("unregister and scope close send goodbyes (TTL 0) that empty the peer's cache", () =>
    Effect.gen(function*() {
      const { a, b, world } = yield* lan
      const scopeA = yield* Scope.make()
      const mdnsA = yield* Scope.extend(mdnsOn(a, { announce: false }), scopeA)
      const mdnsB = yield* mdnsOn(b, { resolveTimeout: "100 millis" })
      const first = yield* mdnsA.register("192.168.1.2")
      const second = yield* mdnsA.register("192.168.1.20")
      for (const name of [first, second]) {
        const fiber = yield* Effect.fork(mdnsB.resolve(name))
        yield* TestClock.adjust("10 millis")
        yield* Fiber.join(fiber)
      }
      yield* mdnsA.unregister(first)
      assert.deepStrictEqual([...(yield* mdnsA.registered).keys()], [second])
      yield* TestClock.adjust("5 millis")
      const gone = yield* Effect.fork(Effect.flip(mdnsB.resolve(first)))
      yield* TestClock.adjust("100 millis")
      assert.deepInclude(yield* Fiber.join(gone), { reason: "Timeout" })
      assert.strictEqual(yield* mdnsB.resolve(second), "192.168.1.20")
      yield* Scope.close(scopeA, Exit.void)
      yield* TestClock.adjust("5 millis")
      const alsoGone = yield* Effect.fork(Effect.flip(mdnsB.resolve(second)))
      yield* TestClock.adjust("100 millis")
      assert.deepInclude(yield* Fiber.join(alsoGone), { reason: "Timeout" })
      const aSent = yield* sentBy(world, "a")
      assert.deepStrictEqual(aSent, [5, 15, 20, 125], "two answers, then a goodbye each")
    }))

  it.scoped("serves an IPv6 address as AAAA, and works over the IPv6 group", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      yield* world.addSite({ name: "v6", ipv6: { filtering: "endpoint-independent" } })
      const a = yield* world.addHost({ name: "a", site: "v6", addresses: ["2001:db8::2"], latency: "1 millis" })
      const b = yield* world.addHost({ name: "b", site: "v6", addresses: ["2001:db8::3"], latency: "1 millis" })
      const mdnsA = yield* mdnsOn(a, { family: "IPv6", announce: false })
      const mdnsB = yield* mdnsOn(b, { family: "IPv6" })
      const name = yield* mdnsA.register("2001:DB8::2")
      const fiber = yield* Effect.fork(mdnsB.resolve(name))
      yield* TestClock.adjust("4 millis")
      assert.strictEqual(yield* Fiber.join(fiber), "2001:db8::2")
    }))

  it.scoped("answers a legacy unicast query (RFC 6762 §6.7) by unicast, with its ID and TTL 10", () =>
    Effect.gen(function*() {
      const { a, b } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      const socket = yield* b.network.bindUdp()
      const replies: Array<{ from: string; at: number; message: Dns.Message }> = []
      yield* socket.setHandler((data, remote) =>
        Effect.map(now, (at) => {
          replies.push({ from: TransportAddress.format(remote), at, message: decodeOk(data) })
        })
      )
      const question = { name, type: Dns.RecordType.A, class: 1, unicastResponse: false }
      yield* socket.send(
        Dns.encode({ id: 0x1234, flags: 0, questions: [question], answers: [], authorities: [], additionals: [] }),
        { family: "IPv4", ip: Mdns.ipv4Group, port: 5353 }
      )
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(replies, [{
        from: "192.168.1.2:5353",
        at: 10,
        message: {
          id: 0x1234,
          flags: 0x8400,
          questions: [question],
          answers: [{ name, class: 1, cacheFlush: false, ttl: 10, type: 1, address: "192.168.1.2" }],
          authorities: [],
          additionals: []
        }
      }])
    }))

  it.scoped("does not answer a query that already holds the answer (known-answer suppression, RFC 6762 §7.1)", () =>
    Effect.gen(function*() {
      const { a, b, world } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      const socket = yield* b.network.bindMulticastUdp({ group: Mdns.ipv4Group, port: 5353 })
      const query = (ttl: number) =>
        Dns.encode({
          id: 0,
          flags: 0,
          questions: [{ name, type: 1, class: 1, unicastResponse: false }],
          answers: [{ name, type: 1, class: 1, cacheFlush: false, ttl, address: "192.168.1.2" }],
          authorities: [],
          additionals: []
        })
      yield* socket.send(query(60), { family: "IPv4", ip: Mdns.ipv4Group, port: 5353 })
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* sentBy(world, "a"), [])
      yield* socket.send(query(59), { family: "IPv4", ip: Mdns.ipv4Group, port: 5353 })
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* sentBy(world, "a"), [15])
    }))

  it.scoped("multicasts a record at most once a second (RFC 6762 §6)", () =>
    Effect.gen(function*() {
      const { a, b, world } = yield* lan
      const mdnsA = yield* mdnsOn(a, { announce: false })
      const name = yield* mdnsA.register("192.168.1.2")
      const socket = yield* b.network.bindMulticastUdp({ group: Mdns.ipv4Group, port: 5353 })
      const query = Dns.encode({
        id: 0,
        flags: 0,
        questions: [{ name, type: 1, class: 1, unicastResponse: false }],
        answers: [],
        authorities: [],
        additionals: []
      })
      const group = { family: "IPv4", ip: Mdns.ipv4Group, port: 5353 } as const
      // Each query reaches a 5 ms after it is sent.
      yield* socket.send(query, group) // reaches a at 5 ms: answered
      yield* TestClock.adjust("10 millis")
      yield* socket.send(query, group) // at 15 ms: 10 ms after the answer, not answered
      yield* TestClock.adjust("985 millis")
      yield* socket.send(query, group) // at 1000 ms: 995 ms after, not answered
      yield* TestClock.adjust("5 millis")
      yield* socket.send(query, group) // at 1005 ms: one second after, answered
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(yield* sentBy(world, "a"), [5, 1005])
    }))

  it.scoped("drops and counts malformed datagrams, and ignores responses from other ports", () =>
    Effect.gen(function*() {
      const { a, b } = yield* lan
      const mdnsB = yield* mdnsOn(b)
      const group = { family: "IPv4", ip: Mdns.ipv4Group, port: 5353 } as const
      const socket = yield* a.network.bindUdp({ port: 4000 })
      yield* socket.send(hex("0000 8400 0000 0001 0000 0000 c00c"), group)
      const spoof = Dns.encode({
        id: 0,
        flags: 0x8400,
        questions: [],
        answers: [{ name: uuidLocal, type: 1, class: 1, cacheFlush: true, ttl: 120, address: "192.168.1.66" }],
        authorities: [],
        additionals: []
      })
      yield* socket.send(spoof, group)
      yield* TestClock.adjust("5 millis")
      assert.strictEqual(mdnsB.malformed(), 1)
      const fiber = yield* Effect.fork(Effect.flip(mdnsB.resolve(uuidLocal, { timeout: "1 second" })))
      yield* TestClock.adjust("1 second")
      assert.deepInclude(yield* Fiber.join(fiber), { reason: "Timeout" })
    }))
})

describe("VirtualNetwork multicast", () => {
  const group = { family: "IPv4", ip: "224.0.0.251", port: 5353 } as const

  it.scoped("reaches every joined socket of the site, the sender's own host at 0 ms, and never crosses a NAT", () =>
    Effect.gen(function*() {
      const { a, b, c, world } = yield* lan
      const publicHost = yield* world.addHost({ name: "p", addresses: ["192.0.2.1"] })
      const got: Array<string> = []
      const join = (host: VirtualNetwork.Host, label: string, joined = "224.0.0.251") =>
        Effect.gen(function*() {
          const socket = yield* host.network.bindMulticastUdp({ group: joined, port: 5353 })
          yield* socket.setHandler((data, remote) =>
            Effect.map(now, (at) => {
              got.push(`${label} ${at} ${TransportAddress.format(remote)} ${data[0]}`)
            })
          )
          return socket
        })
      const a1 = yield* join(a, "a1")
      yield* join(a, "a2")
      yield* join(a, "a3", "224.0.0.252") // another group on the same port: not delivered
      yield* join(b, "b")
      yield* join(c, "c")
      yield* join(publicHost, "p")
      assert.deepStrictEqual(a1.local, { family: "IPv4", ip: "0.0.0.0", port: 5353, transport: "udp" })
      yield* a1.send(Uint8Array.of(7), group)
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(got, [
        "a1 0 192.168.1.2:5353 7",
        "a2 0 192.168.1.2:5353 7",
        "b 5 192.168.1.2:5353 7"
      ])
      // A plain socket may send to the group too; a unicast datagram to the shared port reaches the first socket.
      const plain = yield* b.network.bindUdp({ port: 6000 })
      yield* plain.send(Uint8Array.of(8), group)
      yield* plain.send(Uint8Array.of(9), { family: "IPv4", ip: "192.168.1.2", port: 5353 })
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(got.slice(3), [
        "b 10 192.168.1.3:6000 8",
        "a1 15 192.168.1.3:6000 8",
        "a2 15 192.168.1.3:6000 8",
        "a1 15 192.168.1.3:6000 9"
      ])
    }))

  it.scoped("public hosts form one link: latency of both access links and the internet", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make({ latency: "10 millis" })
      const p = yield* world.addHost({ name: "p", addresses: ["192.0.2.1"], latency: "1 millis" })
      const q = yield* world.addHost({ name: "q", addresses: ["192.0.2.2"], latency: "2 millis" })
      const sender = yield* p.network.bindMulticastUdp({ group: "224.0.0.251", port: 5353 })
      const receiver = yield* q.network.bindMulticastUdp({ group: "224.0.0.251", port: 5353 })
      const at: Array<number> = []
      yield* receiver.setHandler(() => Effect.map(now, (t) => void at.push(t)))
      yield* sender.send(Uint8Array.of(1), group)
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual(at, [13])
    }))

  it.scoped("address reuse among multicast sockets only; bad groups are refused", () =>
    Effect.gen(function*() {
      const { a } = yield* lan
      const net = a.network
      yield* net.bindMulticastUdp({ group: "224.0.0.251", port: 5353 })
      yield* net.bindMulticastUdp({ group: "224.0.0.251", port: 5353, interfaceAddress: "192.168.1.2" })
      const plain = yield* Effect.flip(net.bindUdp({ port: 5353 }))
      assert.strictEqual(plain.reason, "AddressInUse")
      yield* net.bindUdp({ port: 5354 })
      const shared = yield* Effect.flip(net.bindMulticastUdp({ group: "224.0.0.251", port: 5354 }))
      assert.strictEqual(shared.reason, "AddressInUse")
      const reasons = yield* Effect.forEach(
        [
          { group: "192.168.1.9", port: 5353 },
          { group: "ff02::fb", port: 5353, family: "IPv4" as const },
          { group: "224.0.0.251", port: 0 },
          { group: "not an ip", port: 5353 }
        ],
        (options) => Effect.map(Effect.flip(net.bindMulticastUdp(options)), (e) => e.reason)
      )
      assert.deepStrictEqual(reasons, ["InvalidAddress", "InvalidAddress", "InvalidAddress", "InvalidAddress"])
      const noAddress = yield* Effect.flip(
        net.bindMulticastUdp({ group: "224.0.0.251", port: 5353, interfaceAddress: "10.9.9.9" })
      )
      assert.strictEqual(noAddress.reason, "AddressNotAvailable")
      const noV6 = yield* Effect.flip(net.bindMulticastUdp({ group: "ff02::fb", port: 5353 }))
      assert.strictEqual(noV6.reason, "AddressNotAvailable")
    }))
})

// -----------------------------------------------------------------------------
// real sockets
// -----------------------------------------------------------------------------

describe("Mdns on NodeNetwork (real multicast, 224.0.0.251:5353 joined on the loopback interface)", () => {
  it.scopedLive("two engines in one process: register, resolve, and Timeout for an unknown name", () =>
    Effect.gen(function*() {
      const a = yield* Mdns.make({ interfaceAddress: "127.0.0.1", announce: false })
      const b = yield* Mdns.make({ interfaceAddress: "127.0.0.1" })
      const name = yield* a.register("127.0.0.1")
      assert.strictEqual(yield* b.resolve(name, { timeout: "2 seconds" }), "127.0.0.1")
      const v6name = yield* a.register("::1")
      assert.strictEqual(yield* b.resolve(v6name, { timeout: "2 seconds" }), "::1", "AAAA over the IPv4 group")
      const unknown = "0f0e0d0c-0b0a-4908-8706-050403020100.local"
      const error = yield* Effect.flip(b.resolve(unknown, { timeout: "300 millis" }))
      assert.deepInclude(error, { name: unknown, reason: "Timeout", queries: 1 })
    }).pipe(Effect.provide(NodeNetwork.layer)))

  it.scopedLive("bindMulticastUdp: sockets share the port and each gets the group's datagrams, the sender too", () =>
    Effect.gen(function*() {
      const network = yield* Network.Network
      const options = { group: "224.0.0.251", port: 5353, interfaceAddress: "127.0.0.1" }
      const first = yield* network.bindMulticastUdp(options)
      const second = yield* network.bindMulticastUdp(options)
      assert.deepStrictEqual(first.local, { family: "IPv4", ip: "0.0.0.0", port: 5353, transport: "udp" })
      const got: Array<string> = []
      const latch = yield* Effect.makeLatch(false)
      const record = (label: string) => (data: Uint8Array, remote: TransportAddress.SocketAddress) => {
        // Other mDNS traffic on the link (there should be none on loopback) is ignored.
        if (data.length !== 3 || data[0] !== 0xee) return undefined
        got.push(`${label} ${remote.ip} ${data[1]}`)
        return got.length === 2 ? latch.open : undefined
      }
      yield* first.setHandler(record("first"))
      yield* second.setHandler(record("second"))
      yield* first.send(Uint8Array.of(0xee, 1, 0xee), { family: "IPv4", ip: "224.0.0.251", port: 5353 })
      yield* latch.await.pipe(Effect.timeout("2 seconds"))
      assert.sameMembers(got, ["first 127.0.0.1 1", "second 127.0.0.1 1"])
      const invalid = yield* Effect.flip(network.bindMulticastUdp({ group: "127.0.0.1", port: 5353 }))
      assert.strictEqual(invalid.reason, "InvalidAddress")
    }).pipe(Effect.provide(NodeNetwork.layer)))
})
