/**
 * What the STUN server benchmark's processes tell each other: the load generator's input and output (JSON), and
 * the line every server child prints once it listens.
 */

export interface LoadConfig {
  /** The server's IP and UDP port. */
  readonly host: string
  readonly port: number
  /** The IP the generator's socket binds to (port 0). */
  readonly localAddress: string
  /** Whose CPU time to read. */
  readonly serverPid: number
  /** What an answer looks like: a STUN Binding success response, or the request echoed back. */
  readonly expect: "stun" | "echo"
  /** Requests in flight. */
  readonly window: number
  readonly warmupMs: number
  readonly measureMs: number
  /** A request unanswered for this long is counted as lost (and replaced). */
  readonly timeoutMs: number
}

export interface LoadResult {
  /** Valid answers in the measured window. */
  readonly answers: number
  /** Length of the measured window, in ns. */
  readonly elapsedNs: number
  /** The server's utime + stime over the window, in clock ticks. */
  readonly serverTicks: number
  /** Every CPU's busy ticks over the window (`/proc/stat`: all but idle and iowait), and all ticks. */
  readonly machineBusyTicks: number
  readonly machineTotalTicks: number
  /** This generator's CPU time over the window, in µs (`process.cpuUsage`). */
  readonly generatorCpuUs: number
  /** Requests that timed out in the measured window. */
  readonly lost: number
  /** Answers to timed-out requests, answers that do not parse as expected, in the measured window. */
  readonly stale: number
  readonly invalid: number
  /** Answers during the warm-up (to see that it is warm). */
  readonly warmupAnswers: number
  /** The first valid answer: its size, its attribute types, and whether XOR-MAPPED-ADDRESS names our socket. */
  readonly firstAnswer: {
    readonly size: number
    readonly attributes: ReadonlyArray<string>
    readonly xorMappedOk: boolean | undefined
  } | undefined
}

/** The first line a server child prints on stdout, once its socket is bound. */
export interface ServerReady {
  readonly port: number
}
