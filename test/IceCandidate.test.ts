import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option } from "effect"
import * as IceCandidate from "../src/IceCandidate.js"
import type { Candidate } from "../src/IceCandidate.js"
import { formatIPv4, formatIPv6 } from "../src/TransportAddress.js"
import { browserCandidates } from "./fixtures/browser-candidates.js"

const parseOk = (line: string): Candidate => {
  const result = IceCandidate.fromSdp(line)
  if (Either.isLeft(result)) assert.fail(`expected a candidate from ${JSON.stringify(line)}: ${result.left.reason}`)
  return result.right
}

const parseError = (line: string): IceCandidate.CandidateParseError => {
  const result = IceCandidate.fromSdp(line)
  if (Either.isRight(result)) assert.fail(`expected a parse error for ${JSON.stringify(line)}`)
  return result.left
}

// ---------------------------------------------------------------- arbitraries

const iceChar = fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n })
const uuid = fc.uuid()
const ipv4 = bytes(4).map((b) => formatIPv4(b))
const ipv6 = bytes(16).map((b) => formatIPv6(b))
const address = fc.oneof(ipv4, ipv6, uuid.map((u) => `${u}.local`))
const port = fc.integer({ min: 0, max: 65535 })
const vchars = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
  minLength: 1
})
const extension = fc.tuple(
  vchars.filter((name) => !["raddr", "rport", "tcptype"].includes(name.toLowerCase())),
  vchars
)

/** Any candidate `fromSdp` can give back: canonical addresses, optional fields absent rather than undefined. */
const candidateArb: fc.Arbitrary<Candidate> = fc.record({
  foundation: fc.string({ unit: iceChar, minLength: 1, maxLength: 32 }),
  component: fc.integer({ min: 1, max: 256 }),
  transport: fc.constantFrom("udp" as const, "tcp" as const),
  priority: fc.integer({ min: 1, max: 0x7fffffff }),
  address,
  port,
  type: fc.constantFrom("host" as const, "srflx" as const, "prflx" as const, "relay" as const),
  relatedAddress: fc.option(address, { nil: undefined }),
  relatedPort: fc.option(port, { nil: undefined }),
  tcpType: fc.option(fc.constantFrom("active" as const, "passive" as const, "so" as const), { nil: undefined }),
  extensions: fc.array(extension, { maxLength: 5 })
}).map((c) => {
  const { relatedAddress, relatedPort, tcpType, ...rest } = c
  return {
    ...rest,
    ...(relatedAddress === undefined ? {} : { relatedAddress }),
    ...(relatedPort === undefined ? {} : { relatedPort }),
    ...(tcpType === undefined || rest.transport !== "tcp" ? {} : { tcpType })
  }
})

// ---------------------------------------------------------------- tests

describe("IceCandidate", () => {
  describe("priority (RFC 8445 §5.1.2)", () => {
    it("has the recommended type preferences of §5.1.2.2", () => {
      assert.deepStrictEqual(IceCandidate.defaultTypePreference, { host: 126, prflx: 110, srflx: 100, relay: 0 })
    })

    it("computes the RFC's values for component 1 and local preference 65535", () => {
      // 2^24 × 126 + 2^8 × 65535 + (256 − 1) = 2113929216 + 16776960 + 255
      assert.strictEqual(IceCandidate.priority({ type: "host" }), 2130706431)
      assert.strictEqual(IceCandidate.priority({ type: "host", component: 1, localPreference: 65535 }), 2130706431)
      // 2^24 × 100 + 16776960 + 255
      assert.strictEqual(IceCandidate.priority({ type: "srflx" }), 1694498815)
      // 2^24 × 110 + 16776960 + 255
      assert.strictEqual(IceCandidate.priority({ type: "prflx" }), 1862270975)
      // 0 + 16776960 + 255
      assert.strictEqual(IceCandidate.priority({ type: "relay" }), 16777215)
    })

    it("takes component, local and type preference into account", () => {
      assert.strictEqual(IceCandidate.priority({ type: "host", component: 2 }), 2130706430)
      assert.strictEqual(IceCandidate.priority({ type: "host", localPreference: 0 }), 2113929216 + 255)
      assert.strictEqual(
        IceCandidate.priority({ type: "relay", typePreference: 2, localPreference: 1 }),
        33554432 + 256 + 255
      )
      assert.strictEqual(
        IceCandidate.priority({ type: "host", component: 256, localPreference: 0, typePreference: 0 }),
        0
      )
    })

    it.prop("is 2^24·type + 2^8·local + (256 − component), and type preference dominates", {
      type: fc.constantFrom("host" as const, "srflx" as const, "prflx" as const, "relay" as const),
      component: fc.integer({ min: 1, max: 256 }),
      localPreference: fc.integer({ min: 0, max: 65535 }),
      other: fc.integer({ min: 0, max: 65535 })
    }, ({ component, localPreference, other, type }) => {
      const p = IceCandidate.priority({ type, component, localPreference })
      const typePreference = IceCandidate.defaultTypePreference[type]
      assert.strictEqual(p, typePreference * 16777216 + localPreference * 256 + 256 - component)
      assert.isTrue(Number.isSafeInteger(p) && p >= 0 && p < 2 ** 31)
      if (type !== "host") {
        // The lowest host priority is above the highest priority of any other type.
        assert.isTrue(IceCandidate.priority({ type: "host", component: 256, localPreference: 0 }) > p)
      }
      // A higher local preference always wins within a type, whatever the component.
      if (other > localPreference) {
        assert.isTrue(IceCandidate.priority({ type, component: 256, localPreference: other }) > p)
      }
    })
  })

  describe("foundation (RFC 8445 §5.1.1.3)", () => {
    const f = IceCandidate.foundation

    it("is equal for the same type, base IP, server IP and transport", () => {
      assert.strictEqual(
        f({ type: "host", baseAddress: "192.0.2.1", transport: "udp" }),
        f({ type: "host", baseAddress: "192.0.2.1", transport: "udp" })
      )
      // IPv6 written two ways is the same base IP.
      assert.strictEqual(
        f({ type: "host", baseAddress: "2001:DB8:0:0::1", transport: "udp" }),
        f({ type: "host", baseAddress: "2001:db8::1", transport: "udp" })
      )
      // The server's port does not count ("the same IP address"), nor does a server on a host candidate.
      assert.strictEqual(
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1:3478", transport: "udp" }),
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1:19302", transport: "udp" })
      )
      assert.strictEqual(
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1", transport: "udp" }),
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1:3478", transport: "udp" })
      )
      assert.strictEqual(
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "[2001:db8::9]:3478", transport: "udp" }),
        f({ type: "srflx", baseAddress: "10.0.0.2", serverAddress: "2001:db8:0::9", transport: "udp" })
      )
      assert.strictEqual(
        f({ type: "host", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1", transport: "udp" }),
        f({ type: "host", baseAddress: "10.0.0.2", transport: "udp" })
      )
    })

    it("differs when type, base IP, server IP or transport differ", () => {
      const base = { type: "srflx", baseAddress: "10.0.0.2", serverAddress: "198.51.100.1", transport: "udp" } as const
      const variants = [
        base,
        { ...base, type: "relay" },
        { ...base, type: "host" },
        { ...base, type: "prflx" },
        { ...base, baseAddress: "10.0.0.3" },
        { ...base, serverAddress: "198.51.100.2" },
        { ...base, transport: "tcp" }
      ] as const
      const foundations = variants.map((v) => f(v))
      assert.strictEqual(new Set(foundations).size, variants.length, foundations.join(" "))
    })

    it("is 1-32 ice-chars and has no collisions over 10,000 distinct inputs", () => {
      const seen = new Map<string, string>()
      const types = ["host", "srflx", "prflx", "relay"] as const
      for (let i = 0; i < 500; i++) {
        const baseAddress = i < 250 ? `10.${i >> 8}.${i & 0xff}.7` : `2001:db8::${i.toString(16)}`
        for (const transport of ["udp", "tcp"] as const) {
          for (const type of types) {
            const servers = type === "srflx" || type === "relay"
              ? ["198.51.100.1", "198.51.100.2", "203.0.113.3", "stun.example.net:3478"]
              : [undefined]
            for (const serverAddress of servers) {
              const value = f({ type, baseAddress, serverAddress, transport })
              assert.match(value, /^[A-Za-z0-9+/]{1,32}$/)
              const input = `${type} ${baseAddress} ${serverAddress} ${transport}`
              const previous = seen.get(value)
              if (previous !== undefined) assert.fail(`${input} collides with ${previous}`)
              seen.set(value, input)
            }
          }
        }
      }
      assert.strictEqual(seen.size, 500 * 2 * (2 + 2 * 4))
    })
  })

  describe("make", () => {
    it("computes priority and foundation, canonicalizes addresses, leaves absent fields out", () => {
      const host = IceCandidate.make({ type: "host", address: "2001:DB8::0:1", port: 5000 })
      assert.deepStrictEqual(host, {
        foundation: IceCandidate.foundation({ type: "host", baseAddress: "2001:db8::1", transport: "udp" }),
        component: 1,
        transport: "udp",
        priority: 2130706431,
        address: "2001:db8::1",
        port: 5000,
        type: "host",
        extensions: []
      })
      const srflx = IceCandidate.make({
        type: "srflx",
        address: "203.0.113.7",
        port: 40000,
        relatedAddress: "10.0.0.2",
        relatedPort: 5000,
        serverAddress: "198.51.100.1:3478",
        component: 2,
        localPreference: 100
      })
      assert.strictEqual(srflx.priority, 100 * 16777216 + 100 * 256 + 254)
      assert.strictEqual(
        srflx.foundation,
        IceCandidate.foundation({
          type: "srflx",
          baseAddress: "10.0.0.2",
          serverAddress: "198.51.100.1",
          transport: "udp"
        })
      )
      assert.strictEqual(srflx.relatedAddress, "10.0.0.2")
      assert.strictEqual(srflx.relatedPort, 5000)
    })

    it("keeps given priority, foundation and extensions, and tcpType only on TCP", () => {
      const c = IceCandidate.make({
        type: "host",
        address: "192.0.2.1",
        port: 9,
        transport: "tcp",
        tcpType: "active",
        priority: 7,
        foundation: "abc",
        extensions: [["generation", "0"]]
      })
      assert.deepStrictEqual(c, {
        foundation: "abc",
        component: 1,
        transport: "tcp",
        priority: 7,
        address: "192.0.2.1",
        port: 9,
        type: "host",
        tcpType: "active",
        extensions: [["generation", "0"]]
      })
      assert.isFalse("tcpType" in IceCandidate.make({ type: "host", address: "192.0.2.1", port: 9, tcpType: "so" }))
    })
  })

  describe("key, isMdns, addressFamily", () => {
    it("identifies the transport address, with tcpType for TCP", () => {
      const udp = IceCandidate.make({ type: "host", address: "192.0.2.1", port: 54400 })
      assert.strictEqual(IceCandidate.key(udp), "udp|192.0.2.1|54400")
      const tcp = IceCandidate.make({
        type: "host",
        address: "192.0.2.1",
        port: 9,
        transport: "tcp",
        tcpType: "active"
      })
      assert.strictEqual(IceCandidate.key(tcp), "tcp|192.0.2.1|9|active")
      // The foundation, priority and type do not count.
      assert.strictEqual(
        IceCandidate.key({ ...udp, type: "srflx", priority: 1, foundation: "x" }),
        IceCandidate.key(udp)
      )
    })

    it("recognises mDNS names and gives the IP family", () => {
      const mdns = IceCandidate.make({ type: "host", address: "0f9e5f4c-8d6c-4b3c-9a2b-6d1e2f3a4b5c.LOCAL", port: 1 })
      assert.isTrue(IceCandidate.isMdns(mdns))
      assert.isTrue(Option.isNone(IceCandidate.addressFamily(mdns)))
      const v6 = IceCandidate.make({ type: "host", address: "::1", port: 1 })
      assert.isFalse(IceCandidate.isMdns(v6))
      assert.deepStrictEqual(IceCandidate.addressFamily(v6), Option.some("IPv6"))
      assert.deepStrictEqual(
        IceCandidate.addressFamily(IceCandidate.make({ type: "host", address: "192.0.2.1", port: 1 })),
        Option.some("IPv4")
      )
    })
  })

  describe("eliminateRedundant (RFC 8445 §5.1.3)", () => {
    it("drops a candidate with the same transport address and base as a higher-priority one, keeping order", () => {
      const host = IceCandidate.make({ type: "host", address: "192.0.2.1", port: 5000 })
      // A srflx equal to the host (no NAT): same transport address, same base → redundant, host is higher.
      const srflx = IceCandidate.make({
        type: "srflx",
        address: "192.0.2.1",
        port: 5000,
        relatedAddress: "192.0.2.1",
        relatedPort: 5000
      })
      const other = IceCandidate.make({
        type: "srflx",
        address: "203.0.113.1",
        port: 5000,
        relatedAddress: "192.0.2.1"
      })
      const relay = IceCandidate.make({ type: "relay", address: "198.51.100.1", port: 6000 })
      const items = [
        { candidate: srflx, baseKey: "b1", tag: "srflx" },
        { candidate: host, baseKey: "b1", tag: "host" },
        { candidate: other, baseKey: "b1", tag: "other" },
        // Same transport address as the host but a different base: not redundant.
        { candidate: host, baseKey: "b2", tag: "host-b2" },
        { candidate: relay, baseKey: "r", tag: "relay" },
        { candidate: relay, baseKey: "r", tag: "relay-dup" }
      ]
      assert.deepStrictEqual(IceCandidate.eliminateRedundant(items).map((i) => i.tag), [
        "host",
        "other",
        "host-b2",
        "relay"
      ])
      assert.deepStrictEqual(IceCandidate.eliminateRedundant([]), [])
    })
  })

  describe("toSdp / fromSdp (RFC 8839 §5.1)", () => {
    it("writes the attribute in RFC order", () => {
      const c = IceCandidate.make({
        type: "srflx",
        address: "203.0.113.7",
        port: 50000,
        transport: "tcp",
        tcpType: "passive",
        relatedAddress: "192.168.1.5",
        relatedPort: 50000,
        foundation: "4",
        priority: 1684796671,
        extensions: [["generation", "0"], ["ufrag", "EsAw"]]
      })
      assert.strictEqual(
        IceCandidate.toSdp(c),
        "candidate:4 1 tcp 1684796671 203.0.113.7 50000 typ srflx raddr 192.168.1.5 rport 50000 tcptype passive generation 0 ufrag EsAw"
      )
      assert.strictEqual(
        IceCandidate.toSdp(IceCandidate.make({ type: "host", address: "192.0.2.1", port: 54400, foundation: "1" })),
        "candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host"
      )
    })

    it("reads a=, CRLF, repeated spaces, any case of literals, canonicalizes IPv6", () => {
      const c = parseOk("a=candidate:1 2 UDP 2130706430 2001:DB8:0::1  5000 TYP HOST RADDR ::FFFF:10.0.0.1 rport 1\r\n")
      assert.deepStrictEqual(c, {
        foundation: "1",
        component: 2,
        transport: "udp",
        priority: 2130706430,
        address: "2001:db8::1",
        port: 5000,
        type: "host",
        relatedAddress: "::ffff:10.0.0.1",
        relatedPort: 1,
        extensions: []
      })
      // Related fields and tcptype are recognised anywhere among the pairs and written back in RFC order.
      const moved = parseOk(
        "candidate:x 1 tcp 5 192.0.2.1 9 typ host generation 0 tcptype active rport 3 raddr 0.0.0.0"
      )
      assert.strictEqual(
        IceCandidate.toSdp(moved),
        "candidate:x 1 tcp 5 192.0.2.1 9 typ host raddr 0.0.0.0 rport 3 tcptype active generation 0"
      )
    })

    it("refuses malformed lines with a reason", () => {
      const cases: ReadonlyArray<readonly [string, RegExp]> = [
        ["", /candidate:/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ", /at least 8/],
        ["1 1 udp 1 192.0.2.1 5000 typ host", /candidate:/],
        ["candidate: 1 udp 1 192.0.2.1 5000 typ host x", /foundation/],
        ["candidate:" + "a".repeat(33) + " 1 udp 1 192.0.2.1 5000 typ host", /foundation/],
        ["candidate:a-b 1 udp 1 192.0.2.1 5000 typ host", /foundation/],
        ["candidate:1 0 udp 1 192.0.2.1 5000 typ host", /component/],
        ["candidate:1 257 udp 1 192.0.2.1 5000 typ host", /component/],
        ["candidate:1 one udp 1 192.0.2.1 5000 typ host", /component/],
        ["candidate:1 1 sctp 1 192.0.2.1 5000 typ host", /transport/],
        ["candidate:1 1 udp -1 192.0.2.1 5000 typ host", /priority/],
        ["candidate:1 1 udp 1e9 192.0.2.1 5000 typ host", /priority/],
        ["candidate:1 1 udp 4294967296 192.0.2.1 5000 typ host", /priority/],
        ["candidate:1 1 udp 1 192.0.2.256 5000 typ host", /address/],
        ["candidate:1 1 udp 1 stun.example.org 5000 typ host", /address/],
        ["candidate:1 1 udp 1 [::1] 5000 typ host", /address/],
        ["candidate:1 1 udp 1 192.0.2.1 65536 typ host", /port/],
        ["candidate:1 1 udp 1 192.0.2.1 0x10 typ host", /port/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 type host", /typ/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ nat", /candidate type/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ host generation", /no value/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr x.y rport 1", /raddr/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr 10.0.0.1 rport 99999", /rport/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ srflx raddr 10.0.0.1 raddr 10.0.0.2", /twice/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ host tcptype active", /UDP/],
        ["candidate:1 1 tcp 1 192.0.2.1 5000 typ host tcptype both", /tcptype/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ host x y\r\na=candidate:2 1 udp 1 192.0.2.2 5000 typ host", /CR, LF/],
        ["candidate:1 1 udp 1 192.0.2.1 5000 typ host ufrag a\u0000b", /NUL/]
      ]
      for (const [line, reason] of cases) {
        const error = parseError(line)
        assert.strictEqual(error._tag, "CandidateParseError")
        assert.strictEqual(error.input, line)
        assert.match(error.reason, reason, line)
        assert.include(error.message, error.reason)
      }
    })

    it.prop("toSdp then fromSdp gives back the candidate", { candidate: candidateArb }, ({ candidate }) => {
      assert.deepStrictEqual(parseOk(IceCandidate.toSdp(candidate)), candidate)
      assert.deepStrictEqual(parseOk("a=" + IceCandidate.toSdp(candidate) + "\r\n"), candidate)
    })

    it.prop("any string reads to a candidate or a CandidateParseError, never a throw", {
      text: fc.oneof(
        fc.string(),
        fc.string({ unit: "binary" }),
        // Lines close to valid ones: a real line with tokens dropped, swapped or replaced.
        fc.tuple(candidateArb, fc.array(fc.tuple(fc.nat(), fc.string({ maxLength: 6 })), { maxLength: 4 })).map(
          ([candidate, edits]) => {
            const tokens = IceCandidate.toSdp(candidate).split(" ")
            for (const [at, text] of edits) tokens[at % tokens.length] = text
            return tokens.join(" ")
          }
        )
      )
    }, ({ text }) => {
      const result = IceCandidate.fromSdp(text)
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "CandidateParseError")
        assert.strictEqual(result.left.input, text)
      } else {
        // Whatever parses re-serializes to a line that parses to the same candidate.
        assert.deepStrictEqual(parseOk(IceCandidate.toSdp(result.right)), result.right)
      }
    })

    it("never throws on values that are not strings", () => {
      for (const bad of [undefined, null, 42, {}, []]) {
        assert.isTrue(Either.isLeft(IceCandidate.fromSdp(bad as unknown as string)))
        assert.isTrue(Either.isLeft(IceCandidate.fromInit(bad as unknown as IceCandidate.CandidateInit)))
        assert.isTrue(Either.isLeft(IceCandidate.fromInit({ candidate: bad } as unknown as IceCandidate.CandidateInit)))
      }
    })
  })

  describe("browser candidate lines", () => {
    for (const fixture of browserCandidates) {
      it(`${fixture.browser} ${fixture.what}`, () => {
        const parsed = parseOk(fixture.line)
        assert.deepStrictEqual(parsed, fixture.expected)
        const written = IceCandidate.toSdp(parsed)
        assert.deepStrictEqual(parseOk(written), parsed)
        if (fixture.identical) {
          assert.strictEqual(written, fixture.line)
        } else {
          assert.notStrictEqual(written, fixture.line)
          // Firefox: the only difference is the transport's case.
          assert.strictEqual(written, fixture.line.replace(/ (UDP|TCP) /, (m) => m.toLowerCase()))
        }
        assert.strictEqual(IceCandidate.isMdns(parsed), parsed.address.endsWith(".local"))
        // And as the browser hands it over: an RTCIceCandidateInit.
        assert.deepStrictEqual(
          IceCandidate.fromInit({ candidate: fixture.line, sdpMid: "0", sdpMLineIndex: 0, usernameFragment: null }),
          Either.right(Option.some(parsed))
        )
      })
    }

    it("includes every browser and kind the interop needs", () => {
      const kinds = new Set(browserCandidates.map((f) => `${f.browser} ${f.expected.type} ${f.expected.transport}`))
      for (const browser of ["Chrome", "Safari", "Firefox"]) {
        assert.isTrue(kinds.has(`${browser} host udp`), browser)
        assert.isTrue(kinds.has(`${browser} srflx udp`), browser)
        assert.isTrue(kinds.has(`${browser} relay udp`), browser)
        assert.isTrue(kinds.has(`${browser} host tcp`), browser)
      }
      const tcpTypes = new Set(browserCandidates.map((f) => f.expected.tcpType).filter((t) => t !== undefined))
      assert.deepStrictEqual([...tcpTypes].sort(), ["active", "passive", "so"])
    })
  })

  describe("RTCIceCandidateInit", () => {
    const c = IceCandidate.make({ type: "host", address: "192.0.2.1", port: 54400, foundation: "1" })

    it("toInit writes the line and the given fields only", () => {
      assert.deepStrictEqual(IceCandidate.toInit(c), {
        candidate: "candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host"
      })
      assert.deepStrictEqual(IceCandidate.toInit(c, { sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "EsAw" }), {
        candidate: "candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host",
        sdpMid: "0",
        sdpMLineIndex: 0,
        usernameFragment: "EsAw"
      })
    })

    it.prop("toInit then fromInit gives back the candidate", { candidate: candidateArb, mid: fc.string() }, (
      { candidate, mid }
    ) => {
      assert.deepStrictEqual(
        IceCandidate.fromInit(IceCandidate.toInit(candidate, { sdpMid: mid, sdpMLineIndex: 0 })),
        Either.right(Option.some(candidate))
      )
    })

    it("fromInit reads a candidate, end-of-candidates, or an error", () => {
      assert.deepStrictEqual(
        IceCandidate.fromInit(IceCandidate.toInit(c, { sdpMid: "0" })),
        Either.right(Option.some(c))
      )
      assert.deepStrictEqual(IceCandidate.fromInit({ candidate: "" }), Either.right(Option.none()))
      assert.deepStrictEqual(IceCandidate.fromInit(IceCandidate.endOfCandidates), Either.right(Option.none()))
      assert.deepStrictEqual(
        IceCandidate.fromInit({ candidate: "", sdpMid: null, sdpMLineIndex: null, usernameFragment: null }),
        Either.right(Option.none())
      )
      const bad = IceCandidate.fromInit({ candidate: "candidate:1 1 udp" })
      assert.isTrue(Either.isLeft(bad))
    })
  })
})
