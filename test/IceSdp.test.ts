import { assert, describe, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import * as IceCandidate from "../src/IceCandidate.js"
import * as IceSdp from "../src/IceSdp.js"
import { formatIPv4, formatIPv6 } from "../src/TransportAddress.js"
import { chromeOffer, firefoxOffer } from "./fixtures/sdp.js"

const parseOk = (sdp: string): IceSdp.IceDescription => {
  const result = IceSdp.parse(sdp)
  if (Either.isLeft(result)) assert.fail(`expected the SDP to parse, got ${result.left.message}`)
  return result.right
}

const parseError = (sdp: string): IceSdp.IceSdpError => {
  const result = IceSdp.parse(sdp)
  if (Either.isRight(result)) assert.fail(`expected the SDP to be refused, got ${JSON.stringify(result.right)}`)
  return result.left
}

const sdp = (...lines: ReadonlyArray<string>): string => lines.join("\r\n") + "\r\n"
const head = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"] as const
const mLine = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"
const ufrag = "a=ice-ufrag:abcd"
const pwd = "a=ice-pwd:0123456789abcdefABCDEF"

const chromeMdns = "9b36eaac-bb2e-49bb-bb78-21c41c499900.local"
const firefoxMdns = "2f2c4e2c-4b1a-4cbb-8c8b-1c5f6e4ad0a1.local"

describe("IceSdp", () => {
  describe("ice-chars", () => {
    it("isIceChars accepts ALPHA / DIGIT / + / / only", () => {
      assert.isTrue(IceSdp.isIceChars("azAZ09+/"))
      assert.isTrue(IceSdp.isIceChars(""))
      for (const bad of ["-", "_", "=", " ", "é", ":", "a b", "\t"]) assert.isFalse(IceSdp.isIceChars(bad), bad)
    })

    it("isValidUfrag: 4 to 256 ice-chars (RFC 8839 §5.4)", () => {
      assert.isFalse(IceSdp.isValidUfrag("abc"))
      assert.isTrue(IceSdp.isValidUfrag("abcd"))
      assert.isTrue(IceSdp.isValidUfrag("a".repeat(256)))
      assert.isFalse(IceSdp.isValidUfrag("a".repeat(257)))
      assert.isFalse(IceSdp.isValidUfrag("ab-d"))
      assert.deepStrictEqual([IceSdp.minUfragLength, IceSdp.maxUfragLength], [4, 256])
    })

    it("isValidPwd: 22 to 256 ice-chars (RFC 8839 §5.4)", () => {
      assert.isFalse(IceSdp.isValidPwd("a".repeat(21)))
      assert.isTrue(IceSdp.isValidPwd("a".repeat(22)))
      assert.isTrue(IceSdp.isValidPwd("+/".repeat(128)))
      assert.isFalse(IceSdp.isValidPwd("a".repeat(257)))
      assert.isFalse(IceSdp.isValidPwd("a".repeat(21) + "="))
      assert.deepStrictEqual([IceSdp.minPwdLength, IceSdp.maxPwdLength], [22, 256])
    })

    it("isValidOptionTag: 1 or more ice-chars", () => {
      assert.isTrue(IceSdp.isValidOptionTag("trickle"))
      assert.isTrue(IceSdp.isValidOptionTag("ice2"))
      assert.isFalse(IceSdp.isValidOptionTag(""))
      assert.isFalse(IceSdp.isValidOptionTag("ice-lite"))
    })
  })

  describe("browser offers", () => {
    it("reads Chrome's offer: media-level ICE attributes, mDNS host, srflx and relay candidates", () => {
      const extensions999 = [["generation", "0"], ["network-cost", "999"]] as const
      assert.deepStrictEqual(parseOk(chromeOffer), {
        lite: false,
        media: [{
          mid: "0",
          mLineIndex: 0,
          ufrag: "EsAw",
          pwd: "P2uYro0UCOQ4zxjKXaWCBui1",
          options: ["trickle"],
          candidates: [
            {
              foundation: "3348245871",
              component: 1,
              transport: "udp",
              priority: 2113937151,
              address: chromeMdns,
              port: 56143,
              type: "host",
              extensions: extensions999
            },
            {
              foundation: "1779203587",
              component: 1,
              transport: "tcp",
              priority: 1518217471,
              address: chromeMdns,
              port: 9,
              type: "host",
              tcpType: "active",
              extensions: extensions999
            },
            {
              foundation: "842163049",
              component: 1,
              transport: "udp",
              priority: 1677729535,
              address: "203.0.113.7",
              port: 54321,
              type: "srflx",
              relatedAddress: "0.0.0.0",
              relatedPort: 0,
              extensions: extensions999
            },
            {
              foundation: "2064148826",
              component: 1,
              transport: "udp",
              priority: 33562367,
              address: "198.51.100.9",
              port: 61234,
              type: "relay",
              relatedAddress: "203.0.113.7",
              relatedPort: 54321,
              extensions: [["generation", "0"], ["network-id", "1"], ["network-cost", "10"]]
            }
          ],
          endOfCandidates: false
        }]
      })
    })

    it("reads Firefox's offer: session-level ice-options, upper-case transports, end-of-candidates, two sections", () => {
      const host = (port: number): IceCandidate.Candidate => ({
        foundation: "0",
        component: 1,
        transport: "udp",
        priority: 2122252543,
        address: firefoxMdns,
        port,
        type: "host",
        extensions: []
      })
      const srflx = (port: number): IceCandidate.Candidate => ({
        foundation: "1",
        component: 1,
        transport: "udp",
        priority: 1686052863,
        address: "198.51.100.23",
        port,
        type: "srflx",
        relatedAddress: "0.0.0.0",
        relatedPort: 0,
        extensions: []
      })
      const credentials = { ufrag: "9a1b2c3d", pwd: "4bd5fbd3c2b4b7c3a9e0a1f2b3c4d5e6" }
      assert.deepStrictEqual(parseOk(firefoxOffer), {
        lite: false,
        media: [
          {
            mid: "0",
            mLineIndex: 0,
            ...credentials,
            options: ["trickle"],
            candidates: [
              host(54399),
              {
                foundation: "2",
                component: 1,
                transport: "tcp",
                priority: 2105524479,
                address: firefoxMdns,
                port: 9,
                type: "host",
                tcpType: "active",
                extensions: []
              },
              srflx(54400)
            ],
            endOfCandidates: true
          },
          {
            mid: "1",
            mLineIndex: 1,
            ...credentials,
            options: ["trickle"],
            candidates: [host(54401), srflx(54402)],
            endOfCandidates: true
          }
        ]
      })
    })

    it("reads the offers the same with LF or CRLF line ends, and without a final line end", () => {
      const expected = parseOk(chromeOffer)
      assert.deepStrictEqual(parseOk(chromeOffer.replaceAll("\r\n", "\n")), expected)
      assert.deepStrictEqual(parseOk(chromeOffer.trimEnd()), expected)
      assert.deepStrictEqual(parseOk(firefoxOffer.replaceAll("\n", "\r\n")), parseOk(firefoxOffer))
    })

    it("writes what it read: format then parse gives the offers' ICE content back", () => {
      for (const offer of [chromeOffer, firefoxOffer]) {
        const description = parseOk(offer)
        assert.deepStrictEqual(parseOk(IceSdp.format(description)), description)
      }
    })
  })

  describe("levels", () => {
    it("takes ufrag, pwd and options from the session level when a section has none; media level wins", () => {
      const result = parseOk(sdp(
        ...head,
        "a=ice-ufrag:sess",
        "a=ice-pwd:sessionpasswordsessionpw",
        "a=ice-options:trickle ice2",
        mLine,
        "a=mid:a",
        mLine,
        "a=mid:b",
        "a=ice-ufrag:med1",
        "a=ice-options:renomination",
        mLine,
        "a=ice-pwd:mediapasswordmediapassw"
      ))
      assert.deepStrictEqual(result.media.map(({ mid, options, pwd, ufrag }) => ({ mid, ufrag, pwd, options })), [
        { mid: "a", ufrag: "sess", pwd: "sessionpasswordsessionpw", options: ["trickle", "ice2"] },
        { mid: "b", ufrag: "med1", pwd: "sessionpasswordsessionpw", options: ["renomination"] },
        { mid: undefined, ufrag: "sess", pwd: "mediapasswordmediapassw", options: ["trickle", "ice2"] }
      ])
      assert.isFalse("mid" in result.media[2]!)
      assert.deepStrictEqual(result.media.map((m) => m.mLineIndex), [0, 1, 2])
    })

    it("adds up several ice-options lines at one level and keeps the first a=mid", () => {
      const [media] = parseOk(sdp(
        ...head,
        mLine,
        ufrag,
        pwd,
        "a=ice-options:trickle",
        "a=ice-options:ice2 renomination",
        "a=mid:first",
        "a=mid:second"
      )).media
      assert.deepStrictEqual(media!.options, ["trickle", "ice2", "renomination"])
      assert.strictEqual(media!.mid, "first")
    })

    it("reads ice-lite at session level and end-of-candidates at either level", () => {
      const result = parseOk(sdp(...head, "a=ice-lite", "a=end-of-candidates", ufrag, pwd, mLine, mLine))
      assert.isTrue(result.lite)
      assert.deepStrictEqual(result.media.map((m) => m.endOfCandidates), [true, true])
      const perMedia = parseOk(sdp(...head, ufrag, pwd, mLine, mLine, "a=end-of-candidates"))
      assert.isFalse(perMedia.lite)
      assert.deepStrictEqual(perMedia.media.map((m) => m.endOfCandidates), [false, true])
    })

    it("leaves out port-0 sections without ICE attributes, keeping the others' mLineIndex", () => {
      const result = parseOk(sdp(
        ...head,
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        ufrag,
        pwd,
        "a=mid:0",
        "m=video 0 UDP/TLS/RTP/SAVPF 96",
        "a=mid:1",
        "a=inactive",
        "m=application 9/2 UDP/DTLS/SCTP webrtc-datachannel",
        ufrag,
        pwd,
        "a=mid:2"
      ))
      assert.deepStrictEqual(result.media.map((m) => [m.mid, m.mLineIndex]), [["0", 0], ["2", 2]])
      // A port-0 section is kept when it has credentials of its own.
      const bundleOnly = parseOk(sdp(...head, "m=audio 0 UDP/TLS/RTP/SAVPF 111", "a=bundle-only", ufrag, pwd))
      assert.deepStrictEqual(bundleOnly.media.map((m) => m.mLineIndex), [0])
    })

    it("reads an SDP without media sections as no media", () => {
      assert.deepStrictEqual(parseOk(sdp(...head, ufrag, pwd)), { lite: false, media: [] })
      assert.deepStrictEqual(parseOk(""), { lite: false, media: [] })
      assert.deepStrictEqual(parseOk("\r\n\n"), { lite: false, media: [] })
    })

    it("ignores other attributes and lines, and ICE attribute names in another case", () => {
      const result = parseOk(sdp(
        ...head,
        "b=AS:30",
        "z=0 0",
        "a=ICE-UFRAG:zzzz",
        mLine,
        "a=ice-pwd-extra:???",
        "a=ice-ufragment",
        "a=ice-mismatch",
        "a=ice-pacing:50",
        "a=remote-candidates:1 192.0.2.1 5000",
        "a=candidates:bogus",
        ufrag,
        pwd,
        "a=x-candidate:not one"
      ))
      assert.deepStrictEqual(result.media[0]!.ufrag, "abcd")
      assert.deepStrictEqual(result.media[0]!.candidates, [])
    })

    it("reads IPv6 candidates into canonical text", () => {
      const [media] = parseOk(sdp(
        ...head,
        mLine,
        ufrag,
        pwd,
        "a=candidate:1 1 UDP 2122262783 2001:DB8:0:0::1 50000 typ host generation 0",
        "a=candidate:2 1 udp 1686055167 2001:db8::ffff 3000 typ srflx raddr 2001:DB8::1 rport 50000"
      )).media
      assert.deepStrictEqual(media!.candidates.map((c) => [c.address, c.relatedAddress]), [
        ["2001:db8::1", undefined],
        ["2001:db8::ffff", "2001:db8::1"]
      ])
    })
  })

  describe("refusals, with the line number", () => {
    const cases: ReadonlyArray<
      readonly [string, ReadonlyArray<string>, IceSdp.IceSdpError["reason"], number]
    > = [
      ["a line without <letter>=", [...head, mLine, "garbage", ufrag, pwd], "InvalidLine", 6],
      ["an upper-case line type", [...head, "A=ice-lite", mLine, ufrag, pwd], "InvalidLine", 5],
      ["an indented line", [...head, mLine, " a=ice-ufrag:abcd", pwd], "InvalidLine", 6],
      ["an m= line without a port", [...head, "m=audio", ufrag, pwd], "InvalidLine", 5],
      ["an m= line with a bad port", [...head, "m=audio x UDP/TLS/RTP/SAVPF 0", ufrag, pwd], "InvalidLine", 5],
      ["a 3-character ufrag", [...head, mLine, "a=ice-ufrag:abc", pwd], "InvalidUfrag", 6],
      ["a 257-character ufrag", [...head, mLine, `a=ice-ufrag:${"u".repeat(257)}`, pwd], "InvalidUfrag", 6],
      ["a ufrag with '-'", [...head, mLine, "a=ice-ufrag:ab-cd", pwd], "InvalidUfrag", 6],
      ["a ufrag with a trailing space", [...head, mLine, "a=ice-ufrag:abcd ", pwd], "InvalidUfrag", 6],
      ["an empty ufrag", [...head, mLine, "a=ice-ufrag:", pwd], "InvalidUfrag", 6],
      ["a ufrag without value", [...head, mLine, "a=ice-ufrag", pwd], "InvalidUfrag", 6],
      ["a session-level bad ufrag", [...head, "a=ice-ufrag:a_cd", mLine, ufrag, pwd], "InvalidUfrag", 5],
      ["a 21-character pwd", [...head, mLine, ufrag, `a=ice-pwd:${"p".repeat(21)}`], "InvalidPwd", 7],
      ["a 257-character pwd", [...head, mLine, ufrag, `a=ice-pwd:${"p".repeat(257)}`], "InvalidPwd", 7],
      ["a pwd with '='", [...head, mLine, ufrag, `a=ice-pwd:${"p".repeat(22)}=`], "InvalidPwd", 7],
      ["empty ice-options", [...head, mLine, ufrag, pwd, "a=ice-options:"], "InvalidOptions", 8],
      ["ice-options without value", [...head, mLine, ufrag, pwd, "a=ice-options"], "InvalidOptions", 8],
      ["ice-options with two spaces", [...head, mLine, ufrag, pwd, "a=ice-options:trickle  ice2"], "InvalidOptions", 8],
      ["an ice-option with '-'", [...head, "a=ice-options:trickle ice-2", mLine, ufrag, pwd], "InvalidOptions", 5],
      [
        "a candidate with an unknown type",
        [
          ...head,
          mLine,
          ufrag,
          pwd,
          "a=candidate:1 1 udp 1 192.0.2.1 1 typ host",
          "a=candidate:1 1 udp 1 192.0.2.1 1 typ x"
        ],
        "InvalidCandidate",
        9
      ],
      [
        "a candidate missing fields",
        [...head, mLine, ufrag, pwd, "a=candidate:1 1 udp 1 192.0.2.1"],
        "InvalidCandidate",
        8
      ],
      [
        "a candidate with a port out of range",
        [...head, mLine, "a=candidate:1 1 udp 1 192.0.2.1 65536 typ host", ufrag, pwd],
        "InvalidCandidate",
        6
      ],
      ["ice-lite with a value", [...head, "a=ice-lite:yes", mLine, ufrag, pwd], "InvalidAttribute", 5],
      ["end-of-candidates with a value", [...head, mLine, ufrag, pwd, "a=end-of-candidates:1"], "InvalidAttribute", 8],
      ["two ufrags in one section", [...head, mLine, ufrag, pwd, "a=ice-ufrag:efgh"], "DuplicateAttribute", 8],
      ["two session pwds", [...head, pwd, pwd, mLine, ufrag], "DuplicateAttribute", 6],
      ["ice-lite in a media section", [...head, mLine, ufrag, pwd, "a=ice-lite"], "MisplacedAttribute", 8],
      [
        "a candidate at session level",
        [...head, "a=candidate:1 1 udp 1 192.0.2.1 1 typ host", mLine, ufrag, pwd],
        "MisplacedAttribute",
        5
      ],
      ["a section without ufrag", [...head, pwd, mLine, ufrag, mLine, "a=mid:1"], "MissingUfrag", 8],
      ["a section without pwd", [...head, ufrag, mLine, "a=mid:0"], "MissingPwd", 6],
      [
        "a port-0 section with candidates but no pwd",
        [
          ...head,
          "m=audio 0 RTP/AVP 0",
          "a=candidate:1 1 udp 1 192.0.2.1 1 typ host"
        ],
        "MissingUfrag",
        5
      ]
    ]
    for (const [name, lines, reason, line] of cases) {
      it(`${name} → ${reason} at line ${line}`, () => {
        const error = parseError(sdp(...lines))
        assert.strictEqual(error._tag, "IceSdpError")
        assert.strictEqual(error.reason, reason)
        assert.strictEqual(error.line, line)
        assert.strictEqual(error.text, lines[line - 1])
        assert.include(error.message, `line ${line}`)
        // Line numbers count the same with LF line ends.
        assert.strictEqual(parseError(lines.join("\n")).line, line)
      })
    }

    it("says why a candidate was refused", () => {
      const error = parseError(sdp(...head, mLine, ufrag, pwd, "a=candidate:1 1 sctp 1 192.0.2.1 1 typ host"))
      assert.strictEqual(error.reason, "InvalidCandidate")
      assert.include(error.detail, "transport")
    })
  })

  describe("format", () => {
    const candidate = (line: string): IceCandidate.Candidate => Either.getOrThrow(IceCandidate.fromSdp(line))
    const host = candidate("candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host")
    const srflx = candidate("candidate:2 1 udp 1694498815 203.0.113.5 61000 typ srflx raddr 192.0.2.1 rport 54400")

    it("mediaAttributes writes the ICE attributes of a section", () => {
      assert.deepStrictEqual(
        IceSdp.mediaAttributes({
          ufrag: "abcd",
          pwd: "0123456789abcdefABCDEF",
          options: ["trickle"],
          candidates: [host, srflx],
          endOfCandidates: true
        }),
        [
          "a=ice-ufrag:abcd",
          "a=ice-pwd:0123456789abcdefABCDEF",
          "a=ice-options:trickle",
          "a=candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host",
          "a=candidate:2 1 udp 1694498815 203.0.113.5 61000 typ srflx raddr 192.0.2.1 rport 54400",
          "a=end-of-candidates"
        ]
      )
      assert.deepStrictEqual(
        IceSdp.mediaAttributes({
          ufrag: "abcd",
          pwd: "p".repeat(22),
          options: [],
          candidates: [],
          endOfCandidates: false
        }),
        ["a=ice-ufrag:abcd", `a=ice-pwd:${"p".repeat(22)}`]
      )
    })

    it("format writes a minimal data-channel SDP", () => {
      const description: IceSdp.IceDescription = {
        lite: false,
        media: [{
          mid: "0",
          mLineIndex: 0,
          ufrag: "abcd",
          pwd: "0123456789abcdefABCDEF",
          options: ["trickle"],
          candidates: [host],
          endOfCandidates: false
        }]
      }
      assert.strictEqual(
        IceSdp.format(description),
        sdp(
          "v=0",
          "o=- 0 2 IN IP4 127.0.0.1",
          "s=-",
          "t=0 0",
          "a=group:BUNDLE 0",
          "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
          "c=IN IP4 0.0.0.0",
          "a=mid:0",
          "a=ice-ufrag:abcd",
          "a=ice-pwd:0123456789abcdefABCDEF",
          "a=ice-options:trickle",
          "a=candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host",
          "a=sctp-port:5000",
          "a=max-message-size:262144"
        )
      )
      const fingerprint = { algorithm: "sha-256", value: "AB:CD" }
      const withFingerprint = IceSdp.format(description, { sessionId: "42", fingerprint })
      assert.include(withFingerprint, "o=- 42 2 IN IP4 127.0.0.1\r\n")
      assert.include(withFingerprint, "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n")
      assert.include(IceSdp.format(description, { fingerprint, setup: "active" }), "a=setup:active\r\n")
      assert.include(IceSdp.format(description, { setup: "passive" }), "a=setup:passive\r\n")
      assert.notInclude(IceSdp.format(description), "a=setup")
    })

    it("format writes ice-lite and leaves out BUNDLE when a section has no mid", () => {
      const media = { ufrag: "abcd", pwd: "p".repeat(22), options: [], candidates: [], endOfCandidates: true }
      const text = IceSdp.format({
        lite: true,
        media: [{ ...media, mLineIndex: 0 }, { ...media, mid: "x", mLineIndex: 1 }]
      })
      assert.notInclude(text, "a=group:BUNDLE")
      assert.include(text, "t=0 0\r\na=ice-lite\r\nm=application")
      assert.strictEqual(text.split("a=end-of-candidates\r\n").length, 3)
      assert.deepStrictEqual(
        IceSdp.format({ lite: false, media: [] }),
        sdp(...head.slice(0, 1), "o=- 0 2 IN IP4 127.0.0.1", "s=-", "t=0 0")
      )
    })
  })

  describe("candidateInits", () => {
    it("lists each section's candidates as RTCIceCandidateInit, with end-of-candidates", () => {
      const inits = IceSdp.candidateInits(parseOk(firefoxOffer))
      const fields = (mid: string, index: number) => ({
        sdpMid: mid,
        sdpMLineIndex: index,
        usernameFragment: "9a1b2c3d"
      })
      assert.deepStrictEqual(inits, [
        { candidate: `candidate:0 1 udp 2122252543 ${firefoxMdns} 54399 typ host`, ...fields("0", 0) },
        { candidate: `candidate:2 1 tcp 2105524479 ${firefoxMdns} 9 typ host tcptype active`, ...fields("0", 0) },
        {
          candidate: "candidate:1 1 udp 1686052863 198.51.100.23 54400 typ srflx raddr 0.0.0.0 rport 0",
          ...fields("0", 0)
        },
        { candidate: "", ...fields("0", 0) },
        { candidate: `candidate:0 1 udp 2122252543 ${firefoxMdns} 54401 typ host`, ...fields("1", 1) },
        {
          candidate: "candidate:1 1 udp 1686052863 198.51.100.23 54402 typ srflx raddr 0.0.0.0 rport 0",
          ...fields("1", 1)
        },
        { candidate: "", ...fields("1", 1) }
      ])
      for (const init of inits) {
        const back = Either.getOrThrow(IceCandidate.fromInit(init))
        assert.strictEqual(back._tag === "None", init.candidate === "")
      }
    })

    it("leaves sdpMid out for a section without a mid", () => {
      const description = parseOk(sdp(...head, mLine, ufrag, pwd, "a=candidate:1 1 udp 1 192.0.2.1 1 typ host"))
      assert.deepStrictEqual(IceSdp.candidateInits(description), [
        { candidate: "candidate:1 1 udp 1 192.0.2.1 1 typ host", sdpMLineIndex: 0, usernameFragment: "abcd" }
      ])
    })
  })

  describe("properties", () => {
    const iceChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
    const iceChars = (min: number, max: number) =>
      fc.array(iceChar, { minLength: min, maxLength: max }).map((cs) => cs.join(""))
    const address = fc.oneof(
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => formatIPv4(new Uint8Array(b))),
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIPv6(new Uint8Array(b))),
      fc.uuid().map((u) => `${u}.local`)
    )
    const port = fc.integer({ min: 0, max: 65535 })
    const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,11}$/).filter((s) => !["raddr", "rport", "tcptype"].includes(s))
    const candidate: fc.Arbitrary<IceCandidate.Candidate> = fc.record({
      foundation: iceChars(1, 32),
      component: fc.integer({ min: 1, max: 256 }),
      transport: fc.constantFrom("udp" as const, "tcp" as const),
      priority: fc.integer({ min: 1, max: 0x7fffffff }),
      address,
      port,
      type: fc.constantFrom("host" as const, "srflx" as const, "prflx" as const, "relay" as const),
      related: fc.option(fc.tuple(address, port), { nil: undefined }),
      tcpType: fc.constantFrom("active" as const, "passive" as const, "so" as const),
      extensions: fc.array(fc.tuple(token, fc.stringMatching(/^[A-Za-z0-9]{1,8}$/)), { maxLength: 3 })
    }).map(({ related, tcpType, ...fields }) =>
      // Normalized through the codec, so optional fields are absent rather than undefined.
      Either.getOrThrow(IceCandidate.fromSdp(IceCandidate.toSdp({
        ...fields,
        ...(related === undefined ? {} : { relatedAddress: related[0], relatedPort: related[1] }),
        ...(fields.transport === "tcp" ? { tcpType } : {})
      })))
    )
    const description: fc.Arbitrary<IceSdp.IceDescription> = fc.record({
      lite: fc.boolean(),
      media: fc.array(
        fc.record({
          mid: fc.option(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { nil: undefined }),
          ufrag: iceChars(4, 40),
          pwd: iceChars(22, 60),
          options: fc.array(iceChars(1, 10), { maxLength: 3 }),
          candidates: fc.array(candidate, { maxLength: 4 }),
          endOfCandidates: fc.boolean()
        }),
        { maxLength: 4 }
      )
    }).map(({ lite, media }) => ({
      lite,
      media: media.map(({ mid, ...rest }, mLineIndex) => ({
        ...(mid === undefined ? {} : { mid }),
        mLineIndex,
        ...rest
      }))
    }))

    it.prop("parse(format(description)) gives the description back", [description], ([value]) => {
      assert.deepStrictEqual(parseOk(IceSdp.format(value)), value)
      assert.deepStrictEqual(parseOk(IceSdp.format(value).replaceAll("\r\n", "\n")), value)
    }, { fastCheck: { numRuns: 300 } })

    const sdpLine = fc.oneof(
      fc.constantFrom(
        "v=0",
        mLine,
        "m=audio 0 RTP/AVP 0",
        ufrag,
        pwd,
        "a=ice-lite",
        "a=end-of-candidates",
        "a=ice-options:trickle",
        "a=mid:0",
        "a=candidate:1 1 udp 2130706431 192.0.2.1 54400 typ host",
        "a=candidate:",
        "a=",
        "m=",
        ""
      ),
      fc.string().map((s) => `a=${s}`),
      fc.string().map((s) => `a=candidate:${s}`),
      fc.string().map((s) => `a=ice-ufrag:${s}`),
      fc.string()
    )
    const sdpLike = fc.tuple(fc.array(sdpLine, { maxLength: 12 }), fc.constantFrom("\n", "\r\n")).map(([lines, end]) =>
      lines.join(end)
    )

    it.prop(
      "any string is a description or a typed error, never a throw",
      [fc.oneof(fc.string(), sdpLike)],
      ([text]) => {
        const result = IceSdp.parse(text)
        if (Either.isLeft(result)) {
          assert.strictEqual(result.left._tag, "IceSdpError")
          assert.isAtLeast(result.left.line, 1)
        } else {
          for (const media of result.right.media) {
            assert.isTrue(IceSdp.isValidUfrag(media.ufrag))
            assert.isTrue(IceSdp.isValidPwd(media.pwd))
          }
        }
      },
      { fastCheck: { numRuns: 2000 } }
    )
  })
})
