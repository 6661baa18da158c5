/**
 * A vitest reporter that ends the run with one plain line, `vitest: N passed, N failed, N skipped`, which CI
 * systems read to count tests whatever runner produced them.
 */
import type { Reporter, TestModule } from "vitest/node"

export default class SummaryReporter implements Reporter {
  private line = ""

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
    }
    this.line = `vitest: ${passed} passed, ${failed} failed, ${skipped} skipped`
    // The default reporter prints its summary after this hook returns; print ours after it.
    process.once("beforeExit", () => console.log(this.line))
  }
}
