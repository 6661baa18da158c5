/**
 * Helpers for tests under `TestClock`: run an effect while moving the clock, and move the clock to an instant.
 */
import { Clock, Duration, Effect, Fiber, TestClock } from "effect"

/**
 * Runs `effect` in a fiber and moves the clock by `step` until it is done, at most `limit` times; then joins it
 * (so an effect that needs more time than `limit × step` shows up as a hang in the test, not as a wrong result).
 */
export const run = <A, E, R>(effect: Effect.Effect<A, E, R>, step: Duration.DurationInput = "10 millis", limit = 500) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let i = 0; i < limit; i++) {
      yield* TestClock.adjust(step)
      const done = yield* Fiber.poll(fiber)
      if (done._tag === "Some") return yield* done.value
    }
    return yield* Fiber.join(fiber)
  })

/** Moves the clock to `ms` (absolute virtual time); nothing when it is already later. */
export const advanceTo = (ms: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (t) => TestClock.adjust(Duration.millis(Math.max(0, ms - t))))
