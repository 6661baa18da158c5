import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc, Option } from "effect"
import * as IceServer from "../src/IceServer.js"
import { formatIPv4, formatIPv6 } from "../src/TransportAddress.js"

const urlOk = (url: string): IceServer.UrlWithoutCredentials => {
  const result = IceServer.parseUrl(url)
  if (Either.isLeft(result)) assert.fail(`expected ${url} to parse, got ${result.left.message}`)
  return result.right
}

const urlError = (url: string): IceServer.IceServerError => {
  const result = IceServer.parseUrl(url)
  if (Either.isRight(result)) assert.fail(`expected ${url} to be refused, got ${JSON.stringify(result.right)}`)
  return result.left
}

const parseOk = (servers: ReadonlyArray<IceServer.RTCIceServerLike>): Array<IceServer.ServerUrl> => {
  const result = IceServer.parse(servers)
  if (Either.isLeft(result)) assert.fail(`expected the servers to parse, got ${result.left.message}`)
  return result.right
}

const parseError = (servers: ReadonlyArray<IceServer.RTCIceServerLike>): IceServer.IceServerError => {
  const result = IceServer.parse(servers)
  if (Either.isRight(result)) assert.fail(`expected the servers to be refused, got ${JSON.stringify(result.right)}`)
  return result.left
}

const stun = (host: string, port: number, secure = false): IceServer.StunUrl => ({ kind: "stun", host, port, secure })
const turn = (host: string, port: number, transport: "udp" | "tcp" | "tls") => ({
  kind: "turn" as const,
  host,
  port,
  transport
})

describe("IceServer", () => {
  describe("parseUrl: RFC 7064 stun/stuns", () => {
    it("reads the RFC 7064 examples with their default ports", () => {
      assert.deepStrictEqual(urlOk("stun:example.org"), stun("example.org", 3478))
      assert.deepStrictEqual(urlOk("stuns:example.org"), stun("example.org", 5349, true))
      assert.deepStrictEqual(urlOk("stun:example.org:8000"), stun("example.org", 8000))
      assert.deepStrictEqual(urlOk("stuns:example.org:8000"), stun("example.org", 8000, true))
      assert.strictEqual(IceServer.defaultPort, 3478)
      assert.strictEqual(IceServer.defaultSecurePort, 5349)
    })

    it("reads the well-known public servers", () => {
      assert.deepStrictEqual(urlOk("stun:stun.l.google.com:19302"), stun("stun.l.google.com", 19302))
      assert.deepStrictEqual(urlOk("stun:global.stun.twilio.com:3478"), stun("global.stun.twilio.com", 3478))
      assert.deepStrictEqual(urlOk("stun:localhost"), stun("localhost", 3478))
    })

    it("reads IPv4 hosts and IPv6 literals in brackets, in canonical text", () => {
      assert.deepStrictEqual(urlOk("stun:192.0.2.1"), stun("192.0.2.1", 3478))
      assert.deepStrictEqual(urlOk("stun:192.0.2.1:1"), stun("192.0.2.1", 1))
      assert.deepStrictEqual(urlOk("stun:[2001:DB8:0:0::1]:19302"), stun("2001:db8::1", 19302))
      assert.deepStrictEqual(urlOk("stuns:[::1]"), stun("::1", 5349, true))
      assert.deepStrictEqual(urlOk("stun:[::ffff:192.0.2.1]:65535"), stun("::ffff:192.0.2.1", 65535))
    })

    it("reads the scheme case-insensitively and lowercases names", () => {
      assert.deepStrictEqual(urlOk("STUN:Stun.Example.ORG:3479"), stun("stun.example.org", 3479))
      assert.deepStrictEqual(urlOk("StUnS:example.org"), stun("example.org", 5349, true))
      assert.deepStrictEqual(urlOk("stun:example.org."), stun("example.org.", 3478))
      assert.deepStrictEqual(urlOk("stun:_stun.example.org"), stun("_stun.example.org", 3478))
    })
  })

  describe("parseUrl: RFC 7065 turn/turns", () => {
    it("reads the RFC 7065 examples: turn: defaults to UDP on 3478, turns: to TLS on 5349", () => {
      assert.deepStrictEqual(urlOk("turn:example.org"), turn("example.org", 3478, "udp"))
      assert.deepStrictEqual(urlOk("turns:example.org"), turn("example.org", 5349, "tls"))
      assert.deepStrictEqual(urlOk("turn:example.org:8000"), turn("example.org", 8000, "udp"))
      assert.deepStrictEqual(urlOk("turn:example.org?transport=udp"), turn("example.org", 3478, "udp"))
      assert.deepStrictEqual(urlOk("turn:example.org?transport=tcp"), turn("example.org", 3478, "tcp"))
      assert.deepStrictEqual(urlOk("turns:example.org?transport=tcp"), turn("example.org", 5349, "tls"))
    })

    it("reads ports, IPv6 literals and the transport together", () => {
      assert.deepStrictEqual(urlOk("turn:198.51.100.7:443?transport=tcp"), turn("198.51.100.7", 443, "tcp"))
      assert.deepStrictEqual(urlOk("turns:turn.example.com:443?transport=tcp"), turn("turn.example.com", 443, "tls"))
      assert.deepStrictEqual(urlOk("turn:[2001:db8::10]:3479?transport=udp"), turn("2001:db8::10", 3479, "udp"))
      assert.deepStrictEqual(urlOk("turns:[2001:0db8::0010]"), turn("2001:db8::10", 5349, "tls"))
    })

    it("reads the scheme, the parameter name and the transport case-insensitively", () => {
      assert.deepStrictEqual(urlOk("TURN:Example.org?transport=UDP"), turn("example.org", 3478, "udp"))
      assert.deepStrictEqual(urlOk("Turns:example.org?TRANSPORT=Tcp"), turn("example.org", 5349, "tls"))
      assert.deepStrictEqual(urlOk("turn:example.org?Transport=TCP"), turn("example.org", 3478, "tcp"))
    })
  })

  describe("parseUrl: refusals", () => {
    const cases: ReadonlyArray<readonly [string, IceServer.IceServerError["reason"]]> = [
      ["", "InvalidScheme"],
      ["example.org", "InvalidScheme"],
      ["http://example.org", "InvalidScheme"],
      ["stunx:example.org", "InvalidScheme"],
      ["turn-s:example.org", "InvalidScheme"],
      [" stun:example.org", "InvalidScheme"],
      ["constructor:example.org", "InvalidScheme"],
      ["turn:user@example.org", "UserInfo"],
      ["turn:user:secret@example.org:3478?transport=udp", "UserInfo"],
      ["stun:@example.org", "UserInfo"],
      ["stun://example.org", "Path"],
      ["turn://example.org:3478", "Path"],
      ["stun:example.org/", "Path"],
      ["stun:example.org/path", "Path"],
      ["turn:example.org:3478/x?transport=udp", "Path"],
      ["stun:example.org#fragment", "Path"],
      ["turn:example.org?transport=udp#x", "Path"],
      ["stun:", "EmptyHost"],
      ["stun::3478", "EmptyHost"],
      ["stun:[]", "EmptyHost"],
      ["turn:?transport=udp", "EmptyHost"],
      ["stun:::1", "InvalidHost"],
      ["stun:2001:db8::1:3478", "InvalidHost"],
      ["stun:[fe80::1%25eth0]", "InvalidHost"],
      ["stun:[192.0.2.1]", "InvalidHost"],
      ["stun:[v1.fe80::a]", "InvalidHost"],
      ["stun:[::1", "InvalidHost"],
      ["stun:[::1]x", "InvalidHost"],
      ["stun:[::g]", "InvalidHost"],
      ["stun:exa mple.org", "InvalidHost"],
      ["stun:example.org ", "InvalidHost"],
      ["stun:exa%6Dple.org", "InvalidHost"],
      ["stun:-bad.example.org", "InvalidHost"],
      ["stun:bad-.example.org", "InvalidHost"],
      ["stun:a..b", "InvalidHost"],
      ["stun:.example.org", "InvalidHost"],
      ["stun:1.2.3.256", "InvalidHost"],
      ["stun:192.0.2.01", "InvalidHost"],
      ["stun:ex!ample.org", "InvalidHost"],
      [`stun:${"a".repeat(64)}.org`, "InvalidHost"],
      ["stun:example.org:", "InvalidPort"],
      ["stun:example.org:0", "InvalidPort"],
      ["stun:example.org:65536", "InvalidPort"],
      ["stun:example.org:99999", "InvalidPort"],
      ["stun:example.org:03478", "InvalidPort"],
      ["stun:example.org:34a", "InvalidPort"],
      ["stun:example.org:-1", "InvalidPort"],
      ["stun:example.org:+80", "InvalidPort"],
      ["stun:example.org:3478 ", "InvalidPort"],
      ["stun:[::1]:", "InvalidPort"],
      ["turn:[::1]:123456?transport=tcp", "InvalidPort"],
      ["stun:example.org?transport=udp", "InvalidQuery"],
      ["stuns:example.org?", "InvalidQuery"],
      ["turn:example.org?", "InvalidQuery"],
      ["turn:example.org?foo=bar", "InvalidQuery"],
      ["turn:example.org?transport=udp&foo=bar", "InvalidQuery"],
      ["turn:example.org?transport=udp&transport=tcp", "InvalidQuery"],
      ["turn:example.org?transport", "InvalidQuery"],
      ["turn:example.org?transport=", "InvalidQuery"],
      ["turn:example.org?transport=u%64p", "InvalidQuery"],
      ["turn:example.org?transport=udp&", "InvalidQuery"],
      ["turns:example.org?transport=udp", "Unsupported"],
      ["turns:example.org:5349?transport=UDP", "Unsupported"],
      ["turn:example.org?transport=sctp", "Unsupported"],
      ["turn:example.org?transport=tls", "Unsupported"],
      ["turn:example.org?transport=dtls", "Unsupported"]
    ]
    for (const [url, reason] of cases) {
      it(`${JSON.stringify(url)} → ${reason}`, () => {
        const error = urlError(url)
        assert.strictEqual(error._tag, "IceServerError")
        assert.strictEqual(error.reason, reason)
        assert.strictEqual(error.url, url)
        assert.include(error.message, JSON.stringify(url))
        assert.include(error.message, reason)
      })
    }
  })

  describe("parse: RTCIceServer lists", () => {
    it("normalizes every URL of every entry, in order, attaching the entry's credentials to TURN URLs", () => {
      assert.deepStrictEqual(
        parseOk([
          { urls: "stun:stun.l.google.com:19302" },
          {
            urls: [
              "turn:turn.example.com?transport=udp",
              "turn:turn.example.com:80?transport=tcp",
              "turns:[2001:db8::5]"
            ],
            username: "1700000000:alice",
            credential: "c2VjcmV0"
          },
          { urls: ["stuns:192.0.2.1"], username: "ignored", credential: "ignored" }
        ]),
        [
          { kind: "stun", host: "stun.l.google.com", port: 19302, secure: false },
          {
            kind: "turn",
            host: "turn.example.com",
            port: 3478,
            transport: "udp",
            username: "1700000000:alice",
            credential: "c2VjcmV0"
          },
          {
            kind: "turn",
            host: "turn.example.com",
            port: 80,
            transport: "tcp",
            username: "1700000000:alice",
            credential: "c2VjcmV0"
          },
          {
            kind: "turn",
            host: "2001:db8::5",
            port: 5349,
            transport: "tls",
            username: "1700000000:alice",
            credential: "c2VjcmV0"
          },
          { kind: "stun", host: "192.0.2.1", port: 5349, secure: true }
        ]
      )
    })

    it("accepts an empty list, duplicates, empty credentials and credentialType password", () => {
      assert.deepStrictEqual(parseOk([]), [])
      assert.deepStrictEqual(parseOk([{ urls: ["stun:a.example", "stun:a.example"] }]), [
        stun("a.example", 3478),
        stun("a.example", 3478)
      ])
      assert.deepStrictEqual(
        parseOk([{ urls: "turn:192.0.2.9", username: "", credential: "", credentialType: "password" }]),
        [{ kind: "turn", host: "192.0.2.9", port: 3478, transport: "udp", username: "", credential: "" }]
      )
    })

    it("refuses an empty urls list (EmptyUrls)", () => {
      const error = parseError([{ urls: "stun:ok.example" }, { urls: [] }])
      assert.strictEqual(error.reason, "EmptyUrls")
      assert.strictEqual(error.url, "")
    })

    it("refuses a TURN URL without username or credential (MissingCredentials), not a STUN one", () => {
      for (
        const server of [
          { urls: "turn:turn.example.com" },
          { urls: "turns:turn.example.com", username: "alice" },
          { urls: ["stun:ok.example", "turn:turn.example.com"], credential: "secret" },
          { urls: "turn:turn.example.com", username: undefined, credential: "secret" }
        ]
      ) {
        const error = parseError([server])
        assert.strictEqual(error.reason, "MissingCredentials")
        assert.match(error.url, /^turns?:turn\.example\.com$/)
      }
      assert.deepStrictEqual(parseOk([{ urls: "stun:ok.example" }]), [stun("ok.example", 3478)])
    })

    it("refuses a credentialType other than password (Unsupported)", () => {
      const oauth = { urls: "turn:t.example", username: "u", credential: "c", credentialType: "oauth" }
      const error = parseError([oauth as unknown as IceServer.RTCIceServerLike])
      assert.strictEqual(error.reason, "Unsupported")
      assert.strictEqual(error.url, "turn:t.example")
    })

    it("returns the first bad URL", () => {
      const error = parseError([{ urls: ["stun:ok.example", "stun:bad:port", "turn:no-credentials.example"] }])
      assert.strictEqual(error.reason, "InvalidPort")
      assert.strictEqual(error.url, "stun:bad:port")
    })
  })

  describe("format", () => {
    it("writes every URL with its port, and TURN URLs with their transport", () => {
      assert.strictEqual(IceServer.format(stun("example.org", 3478)), "stun:example.org:3478")
      assert.strictEqual(IceServer.format(stun("2001:db8::1", 5349, true)), "stuns:[2001:db8::1]:5349")
      assert.strictEqual(IceServer.format(turn("example.org", 3478, "udp")), "turn:example.org:3478?transport=udp")
      assert.strictEqual(IceServer.format(turn("192.0.2.1", 80, "tcp")), "turn:192.0.2.1:80?transport=tcp")
      assert.strictEqual(IceServer.format(turn("::1", 443, "tls")), "turns:[::1]:443?transport=tcp")
    })

    it("gives RTCIceServer entries back", () => {
      const [a, b] = parseOk([
        { urls: "stun:stun.example.org" },
        { urls: "turns:turn.example.org", username: "u", credential: "p" }
      ])
      assert.deepStrictEqual(IceServer.toIceServer(a!), { urls: "stun:stun.example.org:3478" })
      assert.deepStrictEqual(IceServer.toIceServer(b!), {
        urls: "turns:turn.example.org:5349?transport=tcp",
        username: "u",
        credential: "p"
      })
      assert.deepStrictEqual(parseOk([IceServer.toIceServer(a!), IceServer.toIceServer(b!)]), [a!, b!])
    })

    const host = fc.oneof(
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => formatIPv4(new Uint8Array(b))),
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(new Uint8Array(b))),
      fc.domain().map((d) => d.toLowerCase())
    )
    const port = fc.integer({ min: 1, max: 65535 })
    const url: fc.Arbitrary<IceServer.ServerUrl> = fc.oneof(
      fc.record({ kind: fc.constant("stun" as const), host, port, secure: fc.boolean() }),
      fc.record({
        kind: fc.constant("turn" as const),
        host,
        port,
        transport: fc.constantFrom("udp" as const, "tcp" as const, "tls" as const),
        username: fc.string(),
        credential: fc.string()
      })
    )

    it.prop("parse(toIceServer(url)) gives the URL back", [url], ([value]) => {
      assert.deepStrictEqual(parseOk([IceServer.toIceServer(value)]), [value])
      const { credential: _c, username: _u, ...withoutCredentials } = value as IceServer.TurnUrl
      assert.deepStrictEqual(urlOk(IceServer.format(value)), value.kind === "stun" ? value : withoutCredentials)
    })
  })

  describe("helpers", () => {
    it("hostFamily tells IP hosts from names", () => {
      assert.deepStrictEqual(IceServer.hostFamily(urlOk("stun:192.0.2.1")), Option.some("IPv4" as const))
      assert.deepStrictEqual(IceServer.hostFamily(urlOk("turn:[::1]")), Option.some("IPv6" as const))
      assert.deepStrictEqual(IceServer.hostFamily(urlOk("stun:example.org")), Option.none())
    })

    it("forPolicy keeps only TURN URLs under relay", () => {
      const urls = parseOk([
        {
          urls: ["stun:a.example", "turn:b.example", "stuns:c.example", "turns:d.example"],
          username: "u",
          credential: "p"
        }
      ])
      assert.deepStrictEqual(IceServer.forPolicy(urls, "all"), urls)
      assert.notStrictEqual(IceServer.forPolicy(urls, "all"), urls)
      assert.deepStrictEqual(IceServer.forPolicy(urls, "relay").map(IceServer.format), [
        "turn:b.example:3478?transport=udp",
        "turns:d.example:5349?transport=tcp"
      ])
    })

    it("isIceTransportPolicy", () => {
      assert.isTrue(IceServer.isIceTransportPolicy("all"))
      assert.isTrue(IceServer.isIceTransportPolicy("relay"))
      assert.isFalse(IceServer.isIceTransportPolicy("none"))
      assert.isFalse(IceServer.isIceTransportPolicy("RELAY"))
      assert.isFalse(IceServer.isIceTransportPolicy(undefined))
    })
  })

  describe("never throws", () => {
    const fragment = fc.constantFrom(
      "stun:",
      "stuns:",
      "turn:",
      "turns:",
      "TURN:",
      "[",
      "]",
      ":",
      "::1",
      "@",
      "/",
      "?",
      "#",
      "&",
      "=",
      "%",
      "transport",
      "udp",
      "tcp",
      "example.org",
      "192.0.2.1",
      "3478",
      "0",
      " ",
      "-",
      "."
    )
    const uriLike = fc.array(fragment, { maxLength: 12 }).map((parts) => parts.join(""))

    it.prop("any string is a URL or a typed error", [fc.oneof(fc.string(), uriLike)], ([text]) => {
      const result = IceServer.parseUrl(text)
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left._tag, "IceServerError")
        assert.strictEqual(result.left.url, text)
      } else {
        assert.deepStrictEqual(urlOk(IceServer.format(result.right)), result.right)
      }
    }, { fastCheck: { numRuns: 2000 } })
  })
})
