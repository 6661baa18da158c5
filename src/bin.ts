#!/usr/bin/env node
/**
 * The `effect-ice` executable: the command line of `Cli` on real sockets (`NodeNetwork`) and Node's platform
 * services (`NodeContext`: the file system `turn-server` reads its `--config`, `--cert` and `--key` with).
 * SIGINT/SIGTERM interrupt the program, so every scope (servers, sockets) is released before exit; `runMain`'s
 * teardown then exits with code 0, since an exit that is only an interruption is not a failure
 * (`stun-server` and `turn-server` rely on this: a signal is their normal end). The signal must
 * reach this process: `node --import tsx src/bin.ts` or `tsx src/bin.ts` (which forwards it) do, while `npx`
 * exits on SIGTERM itself (code 143) and leaves the program running.
 * Expected failures print one line (`effect-ice: …`) and exit with code 1; defects print their full cause.
 *
 * @since 0.1.0
 */
import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Layer, Option } from "effect"
import * as Cli from "./Cli.js"
import * as NodeNetwork from "./NodeNetwork.js"

Cli.run(process.argv).pipe(
  Effect.tapErrorCause((cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.void
    const failure = Cause.failureOption(cause)
    if (Option.isNone(failure)) return Console.error(Cause.pretty(cause))
    const error = failure.value
    // The CLI has already printed usage errors, and `stun` each failed query.
    if (ValidationError.isValidationError(error) || error._tag === "StunQueryFailed") return Effect.void
    return Console.error(`effect-ice: ${error.message}`)
  }),
  Effect.provide(Layer.merge(NodeContext.layer, NodeNetwork.layer)),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
