/**
 * The load generator of the TURN relay benchmark (`bench/turn-relay.bench.ts`): one implementation, in its own
 * process, used for every server. Plain `node:dgram`, no Effect, nothing from `src/` (the STUN messages are built by
 * `stun.ts`), so it stays light and independent of the code under test.
 *
 * It holds two sockets: the CLIENT (bound on `clientAddress`, connected to the server) and the PEER (bound on
 * `peerAddress`). Set-up, for a TURN server: Allocate (401 → Allocate with long-term MESSAGE-INTEGRITY, 438 answered
 * too), then ChannelBind (mode `channel`, channel 0x4000 to the peer) or CreatePermission (mode `send`), then the
 * peer socket is connected to the XOR-RELAYED-ADDRESS. For the forwarder (mode `forward`), the peer registers by
 * sending "ok?" to the forwarder's peer-side port until it answers.
 *
 * Load: `window` round trips in flight, closed loop. A round trip is a message from the client to the peer through
 * the server (ChannelData, a Send indication, or a raw datagram), which the peer sends straight back to the relayed
 * address, so the server relays it again to the client (ChannelData, a Data indication, or raw). Each leg is one
 * relayed message: both code paths of a relay (client → peer and peer → client) are measured. When the answer
 * arrives, the slot sends its next message at once. A round trip not completed within `timeoutMs` counts as lost
 * and its slot starts a new one; a late answer counts as stale.
 *
 * Payload (`payloadSize` bytes, the same in every mode): 0xAA 0x55 | tag (4, random per run) | slot (4) |
 * generation (4) | filler. The first byte keeps it from looking like ChannelData or STUN (node-turn, for one, parses
 * what peers send as ChannelData when it can). Each slot has its own send buffer, rewritten only after its answer
 * or its timeout.
 *
 * It reads the server's CPU time (utime + stime of `/proc/<serverPid>/stat`, all threads) and the machine's busy
 * time (`/proc/stat`) at the start and the end of the measured window itself, so the window and the CPU reading
 * match without a round trip to the parent.
 *
 * Input: one JSON argument (`LoadConfig`). Output: one JSON line (`LoadResult`) on stdout; errors on stderr, exit 1.
 */
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import type { LoadConfig, LoadResult } from "./protocol.js"
import { credentials } from "./protocol.js"
import * as Stun from "./stun.js"

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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const bind = (socket: Dgram.Socket, address: string): Promise<void> =>
  new Promise((resolve, reject) => {
    socket.once("error", reject)
    socket.bind({ address, port: 0 }, () => {
      socket.off("error", reject)
      resolve()
    })
  })

const connect = (socket: Dgram.Socket, port: number, host: string): Promise<void> =>
  new Promise((resolve) => socket.connect(port, host, resolve))

const channel = 0x4000
const markerA = 0xaa
const markerB = 0x55

// ---------------------------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------------------------

/** Sends a request on the connected client socket until an answer with its transaction id arrives (bounded). */
const transact = (client: Dgram.Socket, request: Buffer): Promise<Stun.Decoded> =>
  new Promise((resolve, reject) => {
    const tid = request.subarray(8, 20)
    let attempts = 0
    const onMessage = (data: Buffer) => {
      const message = Stun.decode(data)
      if (message === undefined || !message.transactionId.equals(tid)) return
      finish()
      resolve(message)
    }
    const finish = () => {
      clearInterval(timer)
      client.off("message", onMessage)
    }
    const timer = setInterval(() => {
      if (++attempts > 20) {
        finish()
        return reject(new Error(`no answer to ${request.readUInt16BE(0).toString(16)} after 20 attempts`))
      }
      client.send(request)
    }, 250)
    client.on("message", onMessage)
    client.send(request)
  })

/** An authenticated request: answers 401 and 438 challenges (at most 3), fails on any other error. */
const authenticatedRequest = async (
  client: Dgram.Socket,
  method: number,
  attributes: ReadonlyArray<Stun.Attribute>,
  state: { challenge: Stun.Challenge | undefined; log: Array<string> },
  name: string
): Promise<Stun.Decoded> => {
  const codes: Array<string> = []
  for (let attempt = 0; attempt < 4; attempt++) {
    const request = Stun.authenticated(
      method,
      attributes,
      state.challenge,
      credentials.username,
      credentials.password
    )
    const answer = await transact(client, request)
    if (answer.type === Stun.successType(method)) {
      codes.push("200")
      state.log.push(`${name} ${codes.join(" → ")}`)
      return answer
    }
    const code = Stun.errorCode(answer)
    codes.push(String(code ?? "?"))
    const challenge = Stun.challengeOf(answer)
    if (challenge === undefined) break
    state.challenge = challenge
  }
  throw new Error(`${name} failed: ${codes.join(" → ")}`)
}

/** The relayed address and what the set-up did. */
const setUpTurn = async (
  config: LoadConfig,
  client: Dgram.Socket,
  peer: Dgram.Socket
): Promise<string> => {
  const state = { challenge: undefined as Stun.Challenge | undefined, log: [] as Array<string> }
  const allocated = await authenticatedRequest(
    client,
    Stun.Method.Allocate,
    [Stun.requestedTransportUdp],
    state,
    "Allocate"
  )
  const relayedValue = allocated.attributes.get(Stun.Attr.XorRelayedAddress)
  const relayed = relayedValue === undefined ? undefined : Stun.decodeXorAddress(relayedValue)
  if (relayed === undefined) throw new Error("Allocate: no IPv4 XOR-RELAYED-ADDRESS in the success response")
  const local = peer.address()
  const peerAttribute = Stun.xorAddress(Stun.Attr.XorPeerAddress, local.address, local.port)
  if (config.mode === "channel") {
    await authenticatedRequest(
      client,
      Stun.Method.ChannelBind,
      [Stun.channelNumber(channel), peerAttribute],
      state,
      "ChannelBind"
    )
  } else {
    await authenticatedRequest(client, Stun.Method.CreatePermission, [peerAttribute], state, "CreatePermission")
  }
  await connect(peer, relayed.port, relayed.ip)
  return `${state.log.join(", ")}; relayed address ${relayed.ip}:${relayed.port}`
}

/** The forwarder learns the peer from its first datagram and answers it "ok". */
const setUpForward = async (config: LoadConfig, peer: Dgram.Socket): Promise<string> => {
  await connect(peer, config.relayPort!, config.host)
  const ok = new Promise<void>((resolve) => peer.once("message", () => resolve()))
  for (let attempt = 0; attempt < 40; attempt++) {
    peer.send("ok?")
    const answered = await Promise.race([ok.then(() => true), sleep(100).then(() => false)])
    if (answered) return `peer registered with the forwarder (${config.host}:${config.relayPort})`
  }
  throw new Error("the forwarder did not answer the peer's registration")
}

// ---------------------------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------------------------

interface Framing {
  /** Where the payload starts in what the client sends. */
  readonly offset: number
  /** The client's per-slot message, with the payload at `offset`. */
  readonly make: (payload: Buffer) => Buffer
  /** Where the payload starts in what the client receives, or -1 when it is not a relayed message. */
  readonly payloadAt: (data: Buffer) => number
}

const framing = (config: LoadConfig, peerIp: string, peerPort: number): Framing => {
  const size = config.payloadSize
  switch (config.mode) {
    case "forward":
      return { offset: 0, make: (payload) => Buffer.from(payload), payloadAt: (data) => data.length === size ? 0 : -1 }
    case "channel":
      return {
        offset: 4,
        make: (payload) => {
          const b = Buffer.alloc(4 + size)
          b.writeUInt16BE(channel, 0)
          b.writeUInt16BE(size, 2)
          payload.copy(b, 4)
          return b
        },
        // ChannelData from the server: our channel, the length, at most 3 bytes of padding.
        payloadAt: (data) =>
          data.length >= 4 + size && data.length <= 7 + size && data[0] === channel >> 8 && data[1] === 0 &&
            ((data[2]! << 8) | data[3]!) === size
            ? 4
            : -1
      }
    case "send": {
      const peerAttribute = Stun.xorAddress(Stun.Attr.XorPeerAddress, peerIp, peerPort)
      return {
        offset: 20 + 12 + 4,
        make: (payload) =>
          Stun.encode(Stun.indicationType(Stun.Method.Send), Stun.newTransactionId(), [
            peerAttribute,
            Stun.attribute(Stun.Attr.Data, payload)
          ]),
        // A Data indication: walk the attributes to DATA.
        payloadAt: (data) => {
          if (data.length < 20 || ((data[0]! << 8) | data[1]!) !== Stun.indicationType(Stun.Method.Data)) return -1
          const end = 20 + ((data[2]! << 8) | data[3]!)
          if (end > data.length) return -1
          let offset = 20
          while (offset + 4 <= end) {
            const type = (data[offset]! << 8) | data[offset + 1]!
            const length = (data[offset + 2]! << 8) | data[offset + 3]!
            if (type === Stun.Attr.Data) return length === size && offset + 4 + length <= end ? offset + 4 : -1
            offset += 4 + ((length + 3) & ~3)
          }
          return -1
        }
      }
    }
  }
}

const run = async (config: LoadConfig): Promise<LoadResult> => {
  const client = Dgram.createSocket({ type: "udp4" })
  const peer = Dgram.createSocket({ type: "udp4" })
  const sockets = [client, peer]
  for (const socket of sockets) socket.on("error", () => {}) // ICMP errors on connected sockets: ignored
  try {
    await bind(client, config.clientAddress)
    await bind(peer, config.peerAddress)
    await connect(client, config.port, config.host)
    const setup = config.mode === "forward" ? await setUpForward(config, peer) : await setUpTurn(config, client, peer)
    return await load(config, client, peer, setup)
  } finally {
    for (const socket of sockets) {
      try {
        socket.close()
      } catch {
        // already closed
      }
    }
  }
}

const load = (config: LoadConfig, client: Dgram.Socket, peer: Dgram.Socket, setup: string): Promise<LoadResult> =>
  new Promise((resolve) => {
    const window = config.window
    const size = config.payloadSize
    const tag = (Math.random() * 0x1_0000_0000) >>> 0
    const local = peer.address()
    const frame = framing(config, local.address, local.port)
    const buffers: Array<Buffer> = []
    const generationAt = frame.offset + 10
    for (let slot = 0; slot < window; slot++) {
      const payload = Buffer.alloc(size, 0x5a)
      payload[0] = markerA
      payload[1] = markerB
      payload.writeUInt32BE(tag, 2)
      payload.writeUInt32BE(slot, 6)
      buffers.push(frame.make(payload))
    }
    const generation = new Uint32Array(window)
    const outstanding = new Uint8Array(window)
    const sentTick = new Uint32Array(window)

    let tick = 0
    let clientSent = 0
    let peerReceived = 0
    let clientReceived = 0
    let lost = 0
    let stale = 0
    let invalid = 0
    let sending = true
    let receivedSize = 0

    const send = (slot: number): void => {
      const b = buffers[slot]!
      const g = (generation[slot]! + 1) >>> 0
      generation[slot] = g
      b.writeUInt32BE(g, generationAt)
      outstanding[slot] = 1
      sentTick[slot] = tick
      clientSent++
      client.send(b)
    }

    // The peer: every relayed datagram goes straight back to the relayed address (the peer socket is connected).
    peer.on("message", (data: Buffer) => {
      if (data.length !== size || data[0] !== markerA || data[1] !== markerB || data.readUInt32BE(2) !== tag) {
        invalid++
        return
      }
      peerReceived++
      peer.send(data)
    })

    client.on("message", (data: Buffer) => {
      const at = frame.payloadAt(data)
      if (at < 0 || data[at] !== markerA || data[at + 1] !== markerB || data.readUInt32BE(at + 2) !== tag) {
        invalid++
        return
      }
      const slot = data.readUInt32BE(at + 6)
      if (slot >= window || outstanding[slot] !== 1 || data.readUInt32BE(at + 10) !== generation[slot]) {
        stale++
        return
      }
      outstanding[slot] = 0
      clientReceived++
      if (receivedSize === 0) receivedSize = data.length
      if (sending) send(slot)
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

    for (let slot = 0; slot < window; slot++) send(slot)
    setTimeout(() => {
      const warmupRelayed = peerReceived + clientReceived
      const startNs = process.hrtime.bigint()
      const startTicks = cpuTicks(config.serverPid)
      const startMachine = machineTicks()
      const startCpu = process.cpuUsage()
      clientSent = 0
      peerReceived = 0
      clientReceived = 0
      lost = 0
      stale = 0
      invalid = 0
      setTimeout(() => {
        const endTicks = cpuTicks(config.serverPid)
        const endMachine = machineTicks()
        const elapsedNs = Number(process.hrtime.bigint() - startNs)
        const cpu = process.cpuUsage(startCpu)
        sending = false
        clearInterval(ticker)
        resolve({
          elapsedNs,
          clientSent,
          peerReceived,
          clientReceived,
          lost,
          stale,
          invalid,
          serverTicks: endTicks - startTicks,
          machineBusyTicks: endMachine.busy - startMachine.busy,
          machineTotalTicks: endMachine.total - startMachine.total,
          generatorCpuUs: cpu.user + cpu.system,
          warmupRelayed,
          sentSize: buffers[0]!.length,
          receivedSize,
          setup
        })
      }, config.measureMs)
    }, config.warmupMs)
  })

const main = async () => {
  const config = JSON.parse(process.argv[2] ?? "") as LoadConfig
  const result = await run(config)
  process.stdout.write(JSON.stringify(result) + "\n")
}

main().catch((error: unknown) => {
  process.stderr.write(`load-generator: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
})
