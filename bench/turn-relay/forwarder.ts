/**
 * The TURN relay benchmark's ceiling: a plain `node:dgram` forwarder with no TURN at all. It has two sockets, as a
 * relay has: every datagram from the client (on the first socket) is sent on the second socket to the peer, and
 * every datagram from the peer (on the second socket) is sent on the first socket to the client. What it costs per
 * forwarded datagram is what Node itself costs for one receive and one send, the least any TURN server written on
 * `node:dgram` can spend per relayed message.
 *
 * Both ends are learnt from the traffic: the peer is the first sender on the second socket (its first datagram is
 * answered with "ok" so the load generator knows it is registered), the client the first sender on the first
 * socket. Until then datagrams are dropped.
 *
 * Usage: `node --import tsx bench/turn-relay/forwarder.ts <ip>`. Binds `<ip>` port 0 twice, prints
 * `{"port":N,"relayPort":M}` on stdout, and runs until killed.
 */
import * as Dgram from "node:dgram"
import type { ServerReady } from "./protocol.js"

const address = process.argv[2] ?? "127.0.0.1"
const client = Dgram.createSocket({ type: "udp4" })
const relay = Dgram.createSocket({ type: "udp4" })

let clientIp = ""
let clientPort = 0
let peerIp = ""
let peerPort = 0

client.on("message", (data, rinfo) => {
  if (clientPort === 0) {
    clientIp = rinfo.address
    clientPort = rinfo.port
  }
  if (peerPort !== 0) relay.send(data, peerPort, peerIp)
})
relay.on("message", (data, rinfo) => {
  if (peerPort === 0) {
    peerIp = rinfo.address
    peerPort = rinfo.port
    relay.send("ok", peerPort, peerIp)
    return
  }
  if (clientPort !== 0) client.send(data, clientPort, clientIp)
})
for (const socket of [client, relay]) {
  socket.on("error", (error) => {
    process.stderr.write(`forwarder: ${error.message}\n`)
    process.exit(1)
  })
}

let bound = 0
const onBound = () => {
  if (++bound < 2) return
  const ready: ServerReady = { port: client.address().port, relayPort: relay.address().port }
  process.stdout.write(JSON.stringify(ready) + "\n")
}
client.bind({ address, port: 0, exclusive: true }, onBound)
relay.bind({ address, port: 0, exclusive: true }, onBound)

// Exit normally on a signal, so `node --cpu-prof` writes its profile when this server is profiled.
for (const name of ["SIGINT", "SIGTERM"] as const) process.once(name, () => process.exit(0))
