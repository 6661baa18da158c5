import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as net from "node:net"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

describe("examples", () => {
  it("stun-codec.ts decodes, verifies and frames as it says", () => {
    const output = execFileSync(tsx, ["examples/stun-codec.ts"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    assert.include(output, "mapped address: 192.0.2.1:32853")
    assert.include(output, "integrity and fingerprint: valid")
    assert.include(output, "truncated datagram: BadLength at byte 2")
    assert.include(output, "one flipped bit: FingerprintMismatch")
    assert.include(output, "frames from a TCP stream read 7 bytes at a time: Stun(80) TurnChannel(9) Stun(104)")
  })

  it("stun-binding.ts learns its own address from an embedded server", () => {
    const output = execFileSync(tsx, ["examples/stun-binding.ts"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    // The mapped address is the client's own loopback socket: no NAT on loopback.
    assert.match(output, /127\.0\.0\.1:\d+ says our address is 127\.0\.0\.1:(\d+) \(local 0\.0\.0\.0:\1,/)
  })

  it("nat-type.ts discovers a simulated symmetric NAT, and the simulator says what it dropped", () => {
    const output = execFileSync(tsx, ["examples/nat-type.ts", "APDM/APDF"], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000
    })
    assert.match(
      output,
      /^NAT: APDM\/APDF \(symmetric\), mapped 203\.0\.113\.1:\d+, hairpinning no, lifetime [\d.]+ s–[\d.]+ s, direct path unlikely$/m
    )
    assert.match(output, /^  Filtered: \d+$/m)
  })

  it("ice-loopback.ts connects two agents over loopback host candidates and exchanges a message each way", () => {
    const output = execFileSync(tsx, ["examples/ice-loopback.ts"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    assert.match(output, /alice connected: host 127\.0\.0\.1:(\d+) -> host 127\.0\.0\.1:(\d+)"/)
    assert.match(output, /bob connected: host 127\.0\.0\.1:\d+ -> host 127\.0\.0\.1:\d+"/)
    assert.include(output, "bob got: hello bob")
    assert.include(output, "alice got: hello alice")
  })

  it("ice-signaling.ts connects two processes over SDP offer/answer and trickled candidates on stdin/stdout", () => {
    // The offerer prints on stdout; the answerer (its child, whose stdout is the signalling channel) on stderr.
    const run = spawnSync(tsx, ["examples/ice-signaling.ts"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(run.status, 0, run.stderr)
    const offerer = run.stdout
    const answerer = run.stderr
    assert.match(offerer, /^offerer: sent offer: ufrag [A-Za-z0-9+/]{4}, \d+ candidates?.*, ice-options trickle$/m)
    assert.match(answerer, /^answerer: got offer: ufrag [A-Za-z0-9+/]{4}, /m)
    assert.match(offerer, /^offerer: got answer: ufrag [A-Za-z0-9+/]{4}, /m)
    // Both sides select the same pair, each from its own end.
    const mine = /^offerer: selected pair host (127\.0\.0\.1:\d+) -> host (127\.0\.0\.1:\d+)$/m.exec(offerer)
    assert.isNotNull(mine)
    assert.include(answerer, `answerer: selected pair host ${mine![2]} -> host ${mine![1]}\n`)
    assert.include(offerer, "offerer: received \"hello from the answerer\"\n")
    assert.include(answerer, "answerer: received \"hello from the offerer\"\n")
    assert.include(offerer, "offerer: answerer exited with code 0\n")
  })

  it("`effect-ice stun` with no server queries an embedded one and prints the mapped address as JSON too", () => {
    const text = execFileSync(tsx, ["src/bin.ts", "stun"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    assert.match(text, /^embedded STUN server on 127\.0\.0\.1:\d+$/m)
    assert.match(text, /\(udp\): mapped 127\.0\.0\.1:(\d+), rtt [\d.]+ ms, software "effect-ice", from 0\.0\.0\.0:\1$/m)
    const json = JSON.parse(
      execFileSync(tsx, ["src/bin.ts", "stun", "--tcp", "--json"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    )
    assert.strictEqual(json.failures.length, 0)
    assert.strictEqual(json.results[0].transport, "tcp")
    assert.strictEqual(json.results[0].mapped, json.results[0].local)
  })

  it("`effect-ice stun` exits 1 and says why when a server cannot be reached", async () => {
    // A port that was free a moment ago: bound by us, then closed.
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as net.AddressInfo).port
    await new Promise<void>((resolve) => server.close(() => resolve()))
    let failed = false
    try {
      execFileSync(tsx, ["src/bin.ts", "stun", "--tcp", `127.0.0.1:${port}`], {
        cwd: root,
        encoding: "utf8",
        stdio: "pipe"
      })
    } catch (error) {
      failed = true
      const e = error as { status: number; stderr: string }
      assert.strictEqual(e.status, 1)
      assert.include(e.stderr, `127.0.0.1:${port} (tcp): connect 127.0.0.1:${port} failed: ConnectionRefused`)
    }
    assert.isTrue(failed)
  })
})
