/**
 * Candidate lines and offers captured from real browsers (test/fixtures/captured-candidates.ts, issue 8): every line
 * parses with the fields read off it by hand, writes back (byte for byte, except Firefox's uppercase transport), and
 * every captured SDP offer parses with the right ICE credentials and candidate count.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either, Option } from "effect"
import * as IceCandidate from "../src/IceCandidate.js"
import type { Candidate } from "../src/IceCandidate.js"
import * as IceSdp from "../src/IceSdp.js"
import type { CaptureName } from "./fixtures/captured-candidates.js"
import { capturedLines, captures } from "./fixtures/captured-candidates.js"

const parseOk = (line: string): Candidate => {
  const result = IceCandidate.fromSdp(line)
  if (Either.isLeft(result)) assert.fail(`expected a candidate from ${JSON.stringify(line)}: ${result.left.reason}`)
  return result.right
}

const captureNames = Object.keys(captures) as Array<CaptureName>

/** `line` with its transport token (the third) lowercased: the one way Firefox's lines differ from `toSdp`'s. */
const lowercaseTransport = (line: string): string => {
  const tokens = line.split(" ")
  tokens[2] = tokens[2]!.toLowerCase()
  return tokens.join(" ")
}

describe("captured browser candidates", () => {
  it("cover the kinds issue 8 asks for", () => {
    const kinds = (browser: string, test: (c: Candidate) => boolean) =>
      capturedLines.filter((l) => captures[l.capture].browser === browser && test(l.expected)).length
    for (const browser of ["Chromium", "Firefox"]) {
      assert.isAbove(kinds(browser, (c) => c.type === "host" && !c.address.endsWith(".local")), 0, browser)
      assert.isAbove(kinds(browser, (c) => c.type === "host" && c.address.endsWith(".local")), 0, browser)
      assert.isAbove(kinds(browser, (c) => c.type === "srflx"), 0, browser)
      assert.isAbove(kinds(browser, (c) => c.type === "relay"), 0, browser)
    }
    // Only Firefox gathered TCP candidates (see the fixture's header).
    assert.isAbove(kinds("Firefox", (c) => c.transport === "tcp" && c.tcpType === "active" && c.port === 9), 0)
    assert.strictEqual(capturedLines.length, 37)
  })

  describe.each(captureNames)("%s", (name) => {
    const capture = captures[name]
    const lines = capturedLines.filter((l) => l.capture === name)

    it.each(lines.map((l) => [l.what, l] as const))("%s: parses to the fields read off the line", (_, captured) => {
      assert.deepStrictEqual(parseOk(captured.line), captured.expected)
    })

    it.each(lines.map((l) => [l.what, l] as const))("%s: writes back", (_, captured) => {
      const candidate = parseOk(captured.line)
      const written = IceCandidate.toSdp(candidate)
      if (captured.identical) {
        assert.strictEqual(written, captured.line)
      } else {
        // Firefox writes `UDP`/`TCP`; `toSdp` writes lowercase. Nothing else differs.
        assert.strictEqual(capture.browser, "Firefox")
        assert.notStrictEqual(written, captured.line)
        assert.strictEqual(written, lowercaseTransport(captured.line))
      }
      assert.deepStrictEqual(parseOk(written), candidate)
      assert.deepStrictEqual(parseOk(`a=${captured.line}\r\n`), candidate)
    })

    it("reads the trickled RTCIceCandidateInit shapes", () => {
      for (const captured of lines) {
        const init = { candidate: captured.line, sdpMid: "0", sdpMLineIndex: 0, usernameFragment: capture.ufrag }
        assert.deepStrictEqual(IceCandidate.fromInit(init), Either.right(Option.some(captured.expected)))
      }
      if (capture.emptyCandidateEvent) {
        const end = { candidate: "", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: capture.ufrag }
        assert.deepStrictEqual(IceCandidate.fromInit(end), Either.right(Option.none()))
      }
    })

    it("the offer parses with its ufrag, pwd and candidates", () => {
      const result = IceSdp.parse(capture.sdp)
      if (Either.isLeft(result)) assert.fail(`offer rejected: ${result.left.message}`)
      const description = result.right
      assert.strictEqual(description.lite, false)
      assert.strictEqual(description.media.length, 1)
      const media = description.media[0]!
      assert.strictEqual(media.mid, "0")
      assert.strictEqual(media.mLineIndex, 0)
      assert.strictEqual(media.ufrag, capture.ufrag)
      assert.strictEqual(media.pwd, capture.pwd)
      assert.deepStrictEqual(media.options, ["trickle"])
      assert.strictEqual(media.endOfCandidates, capture.endOfCandidates)
      assert.strictEqual(media.candidates.length, capture.sdpCandidates)
      // The offer's a=candidate lines, each written back as the browser wrote it (transport case aside).
      const sdpLines = capture.sdp
        .split("\r\n")
        .filter((l) => l.startsWith("a=candidate:"))
        .map((l) => l.slice(2))
      assert.strictEqual(sdpLines.length, capture.sdpCandidates)
      assert.deepStrictEqual(
        media.candidates.map(IceCandidate.toSdp),
        sdpLines.map((l) => (capture.browser === "Firefox" ? lowercaseTransport(l) : l))
      )
      // The offer holds the trickled candidates; Chromium leaves the `ufrag` extension out of the SDP form.
      const withoutUfrag = (c: Candidate): Candidate => ({
        ...c,
        extensions: c.extensions.filter(([n]) => n !== "ufrag")
      })
      const key = (c: Candidate) => IceCandidate.toSdp(withoutUfrag(c))
      assert.deepStrictEqual(
        media.candidates.map(key).sort(),
        lines.map((l) => key(l.expected)).sort()
      )
    })
  })
})
