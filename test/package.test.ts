/**
 * The package as a user installs it: compiled to JavaScript, imported by name from plain Node, with
 * `effect-ice/internal/*` hidden.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

describe("package", () => {
  it("builds, and plain Node imports it by name with internals hidden", () => {
    const dir = mkdtempSync(join(tmpdir(), "effect-ice-package-"))
    try {
      execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json", "--outDir", join(dir, "dist")], {
        cwd: root,
        stdio: "pipe",
        timeout: 120_000
      })
      copyFileSync(join(root, "package.json"), join(dir, "package.json"))
      symlinkSync(join(root, "node_modules"), join(dir, "node_modules"))
      writeFileSync(
        join(dir, "check.mjs"),
        `import { StunMessage, StunIntegrity } from "effect-ice"
import * as TransportAddress from "effect-ice/TransportAddress"
let hidden = false
try { await import("effect-ice/internal/sha1") } catch (e) { hidden = e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" }
const m = StunMessage.unsafeEncode(StunMessage.make(0, 1, new Uint8Array(12)), { fingerprint: true })
console.log(JSON.stringify({
  length: m.length,
  isStun: StunMessage.isStun(m),
  integrity: typeof StunIntegrity.verify,
  address: TransportAddress.format(TransportAddress.unsafeMake("2001:DB8::1", 3478)),
  hidden
}))
`
      )
      const output = execFileSync(process.execPath, ["check.mjs"], { cwd: dir, encoding: "utf8", timeout: 60_000 })
      assert.deepStrictEqual(JSON.parse(output), {
        length: 28,
        isStun: true,
        integrity: "function",
        address: "[2001:db8::1]:3478",
        hidden: true
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
