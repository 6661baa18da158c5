/**
 * What the TURN relay benchmark's processes tell each other: the inputs and outputs (JSON) of the load generator
 * (`load-generator.ts`, relay throughput) and of the allocator (`allocator.ts`, memory per idle allocation), and
 * the line every Node server child prints once it listens.
 */

/** The first line a Node server child prints on stdout, once its socket is bound. */
export interface ServerReady {
  /** The UDP port clients send to. */
  readonly port: number
  /** The forwarder only: the port of its second socket, which peers send to (its "relayed address"). */
  readonly relayPort?: number | undefined
}

/** Credentials every TURN server of the benchmark is started with. */
export const credentials = { username: "bench", password: "bench-secret", realm: "bench" } as const

/**
 * What is relayed:
 * - `channel`: ChannelData (RFC 8656 §12) both ways, on a channel bound to the peer (ChannelBind);
 * - `send`: Send indications from the client, Data indications to the client (§10), after CreatePermission;
 * - `forward`: raw datagrams through the plain `node:dgram` forwarder (no TURN at all).
 */
export type Mode = "channel" | "send" | "forward"

export interface LoadConfig {
  readonly mode: Mode
  /** The server's IP and UDP port. */
  readonly host: string
  readonly port: number
  /** `forward` only: the forwarder's peer-side port. */
  readonly relayPort?: number | undefined
  /** The IP of the generator's client socket, and of its peer socket (port 0 each). */
  readonly clientAddress: string
  readonly peerAddress: string
  /** Whose CPU time to read. */
  readonly serverPid: number
  /** Round trips in flight (client → peer → client, each leg relayed by the server). */
  readonly window: number
  /** Application bytes per relayed message. */
  readonly payloadSize: number
  readonly warmupMs: number
  readonly measureMs: number
  /** A round trip not completed within this long counts as lost, and its slot starts a new one. */
  readonly timeoutMs: number
}

export interface LoadResult {
  /** Length of the measured window, in ns. */
  readonly elapsedNs: number
  /** Messages the client sent in the window (ChannelData, Send indications or raw datagrams). */
  readonly clientSent: number
  /** Relayed messages that reached the peer (client → peer leg) in the window. */
  readonly peerReceived: number
  /** Relayed messages that reached the client (peer → client leg: ChannelData, Data indications, raw). */
  readonly clientReceived: number
  /** Round trips that timed out in the window. */
  readonly lost: number
  /** Answers to timed-out round trips, and datagrams that did not parse as expected (client and peer). */
  readonly stale: number
  readonly invalid: number
  /** The server's utime + stime over the window, in clock ticks. */
  readonly serverTicks: number
  /** Every CPU's busy ticks over the window (`/proc/stat`: all but idle and iowait), and all ticks. */
  readonly machineBusyTicks: number
  readonly machineTotalTicks: number
  /** This generator's CPU time over the window, in µs (`process.cpuUsage`). */
  readonly generatorCpuUs: number
  /** Relayed messages (both legs) during the warm-up, to see that it is warm. */
  readonly warmupRelayed: number
  /** Wire sizes: what the client sends, and what it receives from the server (0 when nothing came). */
  readonly sentSize: number
  readonly receivedSize: number
  /** What the set-up did, for the report (e.g. "Allocate 401 → 200, ChannelBind 200"). */
  readonly setup: string
}

export interface AllocatorConfig {
  readonly host: string
  readonly port: number
  /** The IP every client socket binds to (port 0 each: one socket, one 5-tuple, one allocation). */
  readonly clientAddress: string
  readonly serverPid: number
  /** Allocations to create. */
  readonly count: number
  /** Allocations in progress at a time. */
  readonly concurrency: number
  /** Retransmission interval of a request; a request is given up after `attempts` transmissions. */
  readonly timeoutMs: number
  readonly attempts: number
  /** How long to wait, once every allocation is made, before the RSS is read. */
  readonly settleMs: number
  /**
   * For a Node server (started with `--expose-gc`, collecting on SIGUSR2): send SIGUSR2 and wait before each RSS
   * reading, so both readings are of live memory, not of garbage the collector has not reached yet.
   */
  readonly collectGarbage: boolean
}

export interface AllocatorResult {
  readonly allocated: number
  /** Failed allocations, by reason ("486", "508", "timeout", …). */
  readonly failures: Readonly<Record<string, number>>
  /** True when the allocator stopped early because the server kept failing. */
  readonly gaveUp: boolean
  /** From the first request to the last answer, in ms. */
  readonly elapsedMs: number
  /** VmRSS of the server, in kB: before the first Allocate, and after `settleMs`. */
  readonly rssBeforeKb: number
  readonly rssAfterKb: number
  /** The highest VmRSS read while allocating and settling. */
  readonly rssPeakKb: number
  /** Request transmissions (first sends and retransmissions) and 401/438 challenges answered. */
  readonly transmissions: number
  readonly challenges: number
}
