/**
 * The load generator of the STUN server benchmark (`bench/stun-server.bench.ts`): one implementation, in its own
 * process, used for every server. Plain `node:dgram`, no Effect, so it stays light.
 *
 * It keeps `window` Binding requests in flight (closed loop: each valid answer sends the next request at once), for
 * `warmupMs` and then `measureMs`, and counts the answers of the measured window. It reads the server's CPU time
 * (utime + stime of `/proc/<serverPid>/stat`, all threads, in clock ticks) at the start and at the end of the
 * measured window itself, so the window and the CPU reading match without a round trip to the parent.
 *
 * Requests are bare 20-byte Binding requests (type 0x0001, magic cookie, no attributes). The transaction id is
 * `tag(4) | slot(4) | generation(4)`: `tag` is random per run, `slot` the index of the in-flight request (0 …
 * window−1), and `generation` counts the requests sent on that slot, so every request has its own transaction id
 * and an answer is matched to its request without a map. Each slot has its own buffer, reused only after its answer
 * (or its timeout), so Node never sends a buffer that is being rewritten.
 *
 * An answer is valid when it is at least 20 bytes, has the expected type (0x0101 Binding success; 0x0001 for the
 * echo server, which returns the request), the magic cookie, the length field matching the size, and the
 * transaction id of the slot's current request. No retransmissions: a request unanswered after `timeoutMs` counts
 * as lost and the slot sends a new request (new generation); a late answer to it is counted as stale.
 *
 * The first valid answer is also parsed: its attribute types, and its XOR-MAPPED-ADDRESS, which must name this
 * generator's own socket.
 *
 * Input: one JSON argument (`LoadConfig`). Output: one JSON line (`LoadResult`) on stdout; errors on stderr, exit 1.
 */
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import type { LoadConfig, LoadResult } from "./protocol.js"

const magicCookie = 0x2112a442

/** utime + stime (fields 14 and 15) of a process: every thread's, live and exited. */
const cpuTicks = (pid: number): number => {
  const text = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12])
}

/** Busy and total clock ticks of the whole machine (first line of `/proc/stat`; idle and iowait are not busy). */
const machineTicks = (): { readonly busy: number; readonly total: number } => {
  const line = Fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = values.reduce((a, b) => a + b, 0)
  return { busy: total - values[3]! - values[4]!, total }
}

const hex4 = (n: number) => `0x${n.toString(16).padStart(4, "0")}`

/** Attribute types of a message, and whether its XOR-MAPPED-ADDRESS (IPv4) is `ip:port`. */
const inspect = (data: Buffer, ip: string, port: number): NonNullable<LoadResult["firstAnswer"]> => {
  const attributes: Array<string> = []
  let xorMappedOk: boolean | undefined
  let offset = 20
  while (offset + 4 <= data.length) {
    const type = data.readUInt16BE(offset)
    const length = data.readUInt16BE(offset + 2)
    attributes.push(hex4(type))
    if (type === 0x0020 && length === 8 && data[offset + 5] === 0x01) {
      const mappedPort = data.readUInt16BE(offset + 6) ^ (magicCookie >>> 16)
      const address = (data.readUInt32BE(offset + 8) ^ magicCookie) >>> 0
      const mappedIp = [address >>> 24, (address >>> 16) & 255, (address >>> 8) & 255, address & 255].join(".")
      xorMappedOk = mappedIp === ip && mappedPort === port
    }
    offset += 4 + ((length + 3) & ~3)
  }
  return { size: data.length, attributes, xorMappedOk }
}

const run = (config: LoadConfig): Promise<LoadResult> =>
  new Promise((resolve, reject) => {
    const window = config.window
    const answerType = config.expect === "stun" ? 0x0101 : 0x0001
    const tag = (Math.random() * 0x1_0000_0000) >>> 0
    const buffers: Array<Buffer> = []
    const generation = new Uint32Array(window)
    const outstanding = new Uint8Array(window)
    const sentTick = new Uint32Array(window)
    for (let slot = 0; slot < window; slot++) {
      const b = Buffer.alloc(20)
      b.writeUInt16BE(0x0001, 0)
      b.writeUInt16BE(0, 2)
      b.writeUInt32BE(magicCookie, 4)
      b.writeUInt32BE(tag, 8)
      b.writeUInt32BE(slot, 12)
      buffers.push(b)
    }

    let tick = 0
    let answers = 0
    let lost = 0
    let stale = 0
    let invalid = 0
    let sending = true
    let firstAnswer: LoadResult["firstAnswer"]
    const socket = Dgram.createSocket({ type: "udp4" })
    let localIp = ""
    let localPort = 0

    const send = (slot: number): void => {
      const b = buffers[slot]!
      const g = (generation[slot]! + 1) >>> 0
      generation[slot] = g
      b.writeUInt32BE(g, 16)
      outstanding[slot] = 1
      sentTick[slot] = tick
      socket.send(b)
    }

    socket.on("message", (data: Buffer) => {
      if (
        data.length < 20 || ((data[0]! << 8) | data[1]!) !== answerType ||
        ((data[2]! << 8) | data[3]!) + 20 !== data.length || data.readUInt32BE(4) !== magicCookie ||
        data.readUInt32BE(8) !== tag
      ) {
        invalid++
        return
      }
      const slot = data.readUInt32BE(12)
      if (slot >= window || outstanding[slot] !== 1 || data.readUInt32BE(16) !== generation[slot]) {
        stale++
        return
      }
      outstanding[slot] = 0
      answers++
      if (firstAnswer === undefined && config.expect === "stun") firstAnswer = inspect(data, localIp, localPort)
      if (sending) send(slot)
    })
    socket.on("error", (error) => {
      cleanup()
      reject(error)
    })

    const tickMs = 25
    const timeoutTicks = Math.max(1, Math.ceil(config.timeoutMs / tickMs))
    const ticker = setInterval(() => {
      tick++
      if (!sending) return
      for (let slot = 0; slot < window; slot++) {
        if (outstanding[slot] === 1 && tick - sentTick[slot]! >= timeoutTicks) {
          lost++
          send(slot)
        }
      }
    }, tickMs)
    const timers: Array<NodeJS.Timeout> = []
    const cleanup = () => {
      clearInterval(ticker)
      for (const t of timers) clearTimeout(t)
      try {
        socket.close()
      } catch {
        // already closed
      }
    }

    // A connected socket: `send` skips the per-datagram address lookup (and its `process.nextTick`), which keeps the
    // generator's cost per request low, and only the server's datagrams are delivered.
    const started = () => {
      const local = socket.address()
      localIp = local.address
      localPort = local.port
      for (let slot = 0; slot < window; slot++) send(slot)
      timers.push(setTimeout(() => {
        const warmupAnswers = answers
        const startNs = process.hrtime.bigint()
        const startTicks = cpuTicks(config.serverPid)
        const startMachine = machineTicks()
        const startCpu = process.cpuUsage()
        answers = 0
        lost = 0
        stale = 0
        invalid = 0
        timers.push(setTimeout(() => {
          const endTicks = cpuTicks(config.serverPid)
          const endMachine = machineTicks()
          const elapsedNs = Number(process.hrtime.bigint() - startNs)
          const cpu = process.cpuUsage(startCpu)
          const result: LoadResult = {
            answers,
            elapsedNs,
            serverTicks: endTicks - startTicks,
            machineBusyTicks: endMachine.busy - startMachine.busy,
            machineTotalTicks: endMachine.total - startMachine.total,
            generatorCpuUs: cpu.user + cpu.system,
            lost,
            stale,
            invalid,
            warmupAnswers,
            firstAnswer
          }
          sending = false
          cleanup()
          resolve(result)
        }, config.measureMs))
      }, config.warmupMs))
    }
    socket.bind({ address: config.localAddress, port: 0 }, () => socket.connect(config.port, config.host, started))
  })

const main = async () => {
  const config = JSON.parse(process.argv[2] ?? "") as LoadConfig
  const result = await run(config)
  process.stdout.write(JSON.stringify(result) + "\n")
}

main().catch((error: unknown) => {
  process.stderr.write(`load-generator: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
