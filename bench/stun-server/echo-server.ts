/**
 * The STUN server benchmark's ceiling: a `node:dgram` socket that sends every datagram straight back to its
 * sender, with no parsing at all. What it costs per answer is what Node itself costs for one receive and one send.
 *
 * Usage: `node --import tsx bench/stun-server/echo-server.ts <ip>`. Binds `<ip>` port 0, prints `{"port":N}` on
 * stdout, and runs until killed.
 */
import * as Dgram from "node:dgram"
import type { ServerReady } from "./protocol.js"

const address = process.argv[2] ?? "127.0.0.1"
const socket = Dgram.createSocket({ type: "udp4" })
socket.on("message", (data, rinfo) => socket.send(data, rinfo.port, rinfo.address))
socket.on("error", (error) => {
  process.stderr.write(`echo-server: ${error.message}\n`)
  process.exit(1)
})
socket.bind({ address, port: 0, exclusive: true }, () => {
  const ready: ServerReady = { port: socket.address().port }
  process.stdout.write(JSON.stringify(ready) + "\n")
})

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
