import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option } from "effect"
import * as net from "node:net"
import * as TransportAddress from "../src/TransportAddress.js"
import * as Arb from "./arbitraries.js"

const canonical = (ip: string) => Option.map(TransportAddress.canonicalIp(ip), (c) => c.ip)

describe("TransportAddress", () => {
  it("parses dotted quads and refuses what is not one", () => {
    assert.deepStrictEqual(canonical("192.0.2.1"), Option.some("192.0.2.1"))
    assert.deepStrictEqual(canonical("0.0.0.0"), Option.some("0.0.0.0"))
    assert.deepStrictEqual(canonical("255.255.255.255"), Option.some("255.255.255.255"))
    for (
      const bad of ["256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.-4", "1..3.4", "", "a.b.c.d", " 1.2.3.4"]
    ) {
      assert.isTrue(Option.isNone(TransportAddress.canonicalIp(bad)), bad)
    }
  })

  it("formats IPv6 canonically as RFC 5952 says", () => {
    const cases: Array<[string, string]> = [
      ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
      ["2001:DB8::1", "2001:db8::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"], // first of two equal runs
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"], // a single zero group is not compressed
      ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longest run wins
      ["::", "::"],
      ["::1", "::1"],
      ["1::", "1::"],
      ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
      ["::ffff:c000:0201", "::ffff:192.0.2.1"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
      ["1:2:3:4:5:6:7.8.9.10", "1:2:3:4:5:6:708:90a"]
    ]
    for (const [input, expected] of cases) assert.deepStrictEqual(canonical(input), Option.some(expected), input)
    for (const bad of [":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7", "::1.2.3"]) {
      assert.isTrue(Option.isNone(TransportAddress.parseIPv6(bad)), bad)
    }
  })

  it.prop("IPv6 bytes survive format then parse, and the text is what Node's own parser accepts", {
    bytes: Arb.bytes(16, 16)
  }, ({ bytes }) => {
    const text = TransportAddress.formatIPv6(bytes)
    assert.isTrue(net.isIPv6(text))
    assert.deepStrictEqual(Option.getOrThrow(TransportAddress.parseIPv6(text)), bytes)
  }, { fastCheck: { numRuns: 2000 } })

  it.prop("arbitrary strings never throw", { text: fc.string({ maxLength: 50 }) }, ({ text }) => {
    TransportAddress.canonicalIp(text)
    TransportAddress.parse(text)
    TransportAddress.parseTransport(text)
  })

  it("parses ip:port and [ipv6]:port, and says why it refuses", () => {
    assert.deepStrictEqual(
      TransportAddress.parse("192.0.2.1:3478"),
      Either.right({ family: "IPv4", ip: "192.0.2.1", port: 3478 })
    )
    assert.deepStrictEqual(
      TransportAddress.parse("[2001:DB8::0001]:443"),
      Either.right({ family: "IPv6", ip: "2001:db8::1", port: 443 })
    )
    const reasons: Array<[string, string]> = [
      ["192.0.2.1", "MissingPort"],
      ["192.0.2.1:65536", "InvalidPort"],
      ["192.0.2.1:03478", "InvalidPort"],
      ["2001:db8::1:80", "InvalidIp"],
      ["[2001:db8::1]", "MissingPort"],
      ["[2001:db8::1:80", "InvalidIp"],
      ["example.org:80", "InvalidIp"]
    ]
    for (const [input, reason] of reasons) {
      const result = TransportAddress.parse(input)
      assert.isTrue(Either.isLeft(result) && result.left.reason === reason, input)
    }
  })

  it("keys equal addresses equally, whatever their spelling", () => {
    const a = Either.getOrThrow(TransportAddress.parseTransport("tcp/[2001:DB8:0::1]:80"))
    const b = Either.getOrThrow(TransportAddress.parseTransport("tcp/[2001:db8::1]:80"))
    assert.strictEqual(TransportAddress.key(a), "tcp/[2001:db8::1]:80")
    assert.strictEqual(TransportAddress.key(a), TransportAddress.key(b))
    assert.notStrictEqual(TransportAddress.key(a), TransportAddress.key({ ...b, transport: "udp" }))
    assert.isTrue(TransportAddress.equals(a, b))
    assert.isTrue(TransportAddress.sameIp(a, { ...b, port: 81 }))
    assert.strictEqual(TransportAddress.format(TransportAddress.unsafeMake("10.0.0.1", 5)), "10.0.0.1:5")
    assert.isTrue(Either.isLeft(TransportAddress.parseTransport("sctp/1.2.3.4:5")))
  })

  it("converts to and from network byte order", () => {
    assert.deepStrictEqual(
      Option.getOrThrow(TransportAddress.ipToBytes("192.0.2.1")),
      new Uint8Array([192, 0, 2, 1])
    )
    assert.deepStrictEqual(TransportAddress.ipFromBytes(new Uint8Array([10, 0, 0, 1])), Option.some("10.0.0.1"))
    assert.isTrue(Option.isNone(TransportAddress.ipFromBytes(new Uint8Array(5))))
  })
})
