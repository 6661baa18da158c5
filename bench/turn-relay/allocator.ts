/**
 * The memory scenario of the TURN relay benchmark (`bench/turn-relay.bench.ts`): creates `count` allocations on a
 * TURN server, each from its own client socket (one socket, one 5-tuple, one allocation), and reads the server's
 * resident memory (VmRSS of `/proc/<serverPid>/status`) before the first request and `settleMs` after the last
 * answer. The allocations stay idle: no permission, no channel, no data. Every client socket stays open until the
 * end (a closed socket's port could be handed to the next socket, whose Allocate would then hit the old
 * allocation).
 *
 * Each allocation is one authenticated Allocate (REQUESTED-TRANSPORT UDP, long-term MESSAGE-INTEGRITY). The last
 * REALM and NONCE seen are used for the next socket's first request, so a server whose nonces are good for any
 * 5-tuple (effect-ice: per client IP; node-turn: global) needs one round trip per allocation; a server that binds
 * nonces to the 5-tuple (coturn) answers 401 or 438 first, and the request is sent again with the new nonce. A
 * request unanswered after `timeoutMs` is retransmitted (the same bytes, so the server's retransmission handling
 * applies), up to `attempts` transmissions in all. `concurrency` allocations are in progress at a time.
 *
 * The run gives up early (and says so) when 500 allocations in a row have failed.
 *
 * Input: one JSON argument (`AllocatorConfig`). Output: one JSON line (`AllocatorResult`) on stdout.
 */
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import type { AllocatorConfig, AllocatorResult } from "./protocol.js"
import { credentials } from "./protocol.js"
import * as Stun from "./stun.js"

const rssKb = (pid: number): number => {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return match === null ? 0 : Number(match[1])
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Asks a Node server to run a full collection (its SIGUSR2 handler calls `gc()`), then gives it time to. */
const collect = async (pid: number): Promise<void> => {
  process.kill(pid, "SIGUSR2")
  await sleep(500)
}

const run = async (config: AllocatorConfig): Promise<AllocatorResult> => {
  const sockets: Array<Dgram.Socket> = []
  const failures: Record<string, number> = {}
  let challenge: Stun.Challenge | undefined
  let allocated = 0
  let failedInARow = 0
  let gaveUp = false
  let transmissions = 0
  let challenges = 0
  let next = 0
  let rssPeakKb = 0

  if (config.collectGarbage) await collect(config.serverPid)
  const rssBeforeKb = rssKb(config.serverPid)
  rssPeakKb = rssBeforeKb
  const peakTimer = setInterval(() => rssPeakKb = Math.max(rssPeakKb, rssKb(config.serverPid)), 250)

  const fail = (reason: string) => {
    failures[reason] = (failures[reason] ?? 0) + 1
    if (++failedInARow >= 500) gaveUp = true
  }

  /** One request on `socket`, retransmitted until answered or `attempts` sends; undefined on time-out. */
  const transact = (socket: Dgram.Socket, request: Buffer): Promise<Stun.Decoded | undefined> =>
    new Promise((resolve) => {
      const tid = request.subarray(8, 20)
      let sent = 0
      const transmit = () => {
        if (sent >= config.attempts) {
          socket.off("message", onMessage)
          return resolve(undefined)
        }
        sent++
        transmissions++
        socket.send(request)
        timer = setTimeout(transmit, config.timeoutMs)
      }
      const onMessage = (data: Buffer) => {
        const message = Stun.decode(data)
        if (message === undefined || !message.transactionId.equals(tid)) return
        clearTimeout(timer)
        socket.off("message", onMessage)
        resolve(message)
      }
      let timer: NodeJS.Timeout
      socket.on("message", onMessage)
      transmit()
    })

  const allocateOne = async (): Promise<void> => {
    const socket = Dgram.createSocket({ type: "udp4" })
    socket.on("error", () => {})
    sockets.push(socket)
    await new Promise<void>((resolve) => socket.bind({ address: config.clientAddress, port: 0 }, resolve))
    await new Promise<void>((resolve) => socket.connect(config.port, config.host, resolve))
    for (let attempt = 0; attempt < 4; attempt++) {
      const request = Stun.authenticated(
        Stun.Method.Allocate,
        [Stun.requestedTransportUdp],
        challenge,
        credentials.username,
        credentials.password
      )
      const answer = await transact(socket, request)
      if (answer === undefined) return fail("timeout")
      if (answer.type === Stun.successType(Stun.Method.Allocate)) {
        allocated++
        failedInARow = 0
        return
      }
      const fresh = Stun.challengeOf(answer)
      if (fresh === undefined) return fail(String(Stun.errorCode(answer) ?? "bad answer"))
      challenges++
      challenge = fresh
    }
    fail("challenged 4 times")
  }

  const started = Date.now()
  let lastAnswer = started
  const worker = async () => {
    while (next < config.count && !gaveUp) {
      next++
      await allocateOne()
      lastAnswer = Date.now()
    }
  }
  await Promise.all(Array.from({ length: Math.min(config.concurrency, config.count) }, worker))
  const elapsedMs = lastAnswer - started
  await sleep(config.settleMs)
  if (config.collectGarbage) await collect(config.serverPid)
  const rssAfterKb = rssKb(config.serverPid)
  clearInterval(peakTimer)
  rssPeakKb = Math.max(rssPeakKb, rssAfterKb)
  for (const socket of sockets) {
    try {
      socket.close()
    } catch {
      // already closed
    }
  }
  return {
    allocated,
    failures,
    gaveUp,
    elapsedMs,
    rssBeforeKb,
    rssAfterKb,
    rssPeakKb,
    transmissions,
    challenges
  }
}

const main = async () => {
  const config = JSON.parse(process.argv[2] ?? "") as AllocatorConfig
  const result = await run(config)
  process.stdout.write(JSON.stringify(result) + "\n")
}

main().catch((error: unknown) => {
  process.stderr.write(`allocator: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
