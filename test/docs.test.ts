/**
 * The public API's documentation rule (STYLE.md): every public module opens with a module doc, and every export
 * has a JSDoc block with a description, `@since` and `@category`. `src/internal/` is not public and only needs
 * its `@internal` marks.
 */
import { assert, describe, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const srcDir = fileURLToPath(new URL("../src/", import.meta.url))
// bin.ts is the executable, not a module to import.
const publicModules = readdirSync(srcDir).filter((f) => f.endsWith(".ts") && f !== "bin.ts")

/** The JSDoc block that ends right before `index` (only blank lines between), or undefined. */
const docBefore = (text: string, index: number): string | undefined => {
  const before = text.slice(0, index).trimEnd()
  if (!before.endsWith("*/")) return undefined
  const start = before.lastIndexOf("/**")
  return start < 0 ? undefined : before.slice(start)
}

describe("API documentation", () => {
  it("every public module is re-exported from src/index.ts", () => {
    const index = readFileSync(`${srcDir}index.ts`, "utf8")
    for (const file of publicModules.filter((f) => f !== "index.ts")) {
      const name = file.replace(/\.ts$/, "")
      assert.include(index, `export * as ${name} from "./${name}.js"`, file)
    }
  })

  for (const file of publicModules) {
    it(`${file}: module doc, and description + @since + @category on every export`, () => {
      const text = readFileSync(`${srcDir}${file}`, "utf8")
      assert.match(text, /^\/\*\*\n \* \S/, "module doc at the top")
      const missing: Array<string> = []
      const exportPattern = /^export (?:declare )?(?:const|class|interface|type|function|\* as) (\w+)/gm
      for (const match of text.matchAll(exportPattern)) {
        const doc = docBefore(text, match.index)
        const name = match[1]!
        if (doc === undefined) {
          missing.push(`${name}: no JSDoc`)
          continue
        }
        const description = doc.replace(/^\/\*\*/, "").split(/@\w+/)[0]!.replace(/[*\s]/g, "")
        if (description.length === 0) missing.push(`${name}: no description`)
        if (!/@since \d+\.\d+\.\d+/.test(doc)) missing.push(`${name}: no @since`)
        if (file !== "index.ts" && !/@category \w+/.test(doc)) missing.push(`${name}: no @category`)
      }
      assert.deepStrictEqual(missing, [])
    })
  }
})
