import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const tsx = fileURLToPath(new URL("../node_modules/.bin/tsx", import.meta.url))

describe("examples", () => {
  it("stun-codec.ts (what `npm start` runs) decodes, verifies and frames as it says", () => {
    const output = execFileSync(tsx, ["examples/stun-codec.ts"], { cwd: root, encoding: "utf8", timeout: 60_000 })
    assert.include(output, "mapped address: 192.0.2.1:32853")
    assert.include(output, "integrity and fingerprint: valid")
    assert.include(output, "truncated datagram: BadLength at byte 2")
    assert.include(output, "one flipped bit: FingerprintMismatch")
    assert.include(output, "frames from a TCP stream read 7 bytes at a time: Stun(80) TurnChannel(9) Stun(104)")
  })
})
