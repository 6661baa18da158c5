"""
An aioice ICE agent driven over stdin/stdout with JSON lines, for the interop tests (ice-aioice.test.ts).

Run with Debian's interpreter: /usr/bin/python3 aioice_peer.py --role controlled [--trickle] [--host 127.0.0.1]
  [--turn IP:PORT --turn-username U --turn-password P [--relay-only]] [--timeout 30] [--prefix echo:]

Printed (stdout), one JSON object per line:
  {"type": "credentials", "ufrag": ..., "pwd": ...}
  {"type": "candidate", "sdp": "<aioice to_sdp(), no 'candidate:' prefix>"}   (one per local candidate)
  {"type": "end-of-candidates"}
  {"type": "connected", "ms": <real ms spent in connect()>, "local": sdp, "remote": sdp, "role": <final role>}
  {"type": "data", "hex": ...}                                   (each datagram received after connecting)
  {"type": "error", "message": ...}
Read (stdin):
  {"type": "credentials", "ufrag": ..., "pwd": ...}
  {"type": "candidate", "sdp": "..."}                            ('candidate:' prefix optional)
  {"type": "end-of-candidates"}

Without --trickle, connect() starts once the remote credentials and end-of-candidates have arrived (every remote
candidate known first); with it, as soon as the remote credentials are known (candidates trickle in meanwhile).
Once connected it sends "hello from aioice", and answers each datagram with the prefix followed by the datagram.
It exits when stdin closes, or after --timeout seconds (exit code 3), whichever comes first.

aioice 0.8 leaves 127.0.0.1 out of its host addresses (get_host_addresses), so this test driver replaces that
function with one that returns the loopback address the test uses: the test stays on loopback. With --relay-only
the host addresses are none at all (aioice's TransportPolicy.RELAY only hides host candidates and still checks from
the host sockets), so the only local candidate, and the only base, is the TURN relay.
"""

import argparse
import asyncio
import json
import sys
import time

import aioice
import aioice.ice
from aioice import Candidate, Connection, TransportPolicy


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["controlling", "controlled"], required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--turn", default=None)
    parser.add_argument("--turn-username", default=None)
    parser.add_argument("--turn-password", default=None)
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--trickle", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--prefix", default="echo:")
    parser.add_argument("--hello", default="hello from aioice")
    return parser.parse_args()


async def run(args) -> int:
    host_addresses = [] if args.relay_only else [args.host]

    # Test driver only: keep aioice on the loopback address the test gives (it skips 127.0.0.1 by itself).
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool):
        return host_addresses

    aioice.ice.get_host_addresses = get_host_addresses

    turn_server = None
    if args.turn is not None:
        ip, port = args.turn.rsplit(":", 1)
        turn_server = (ip, int(port))
    connection = Connection(
        ice_controlling=args.role == "controlling",
        components=1,
        use_ipv4=True,
        use_ipv6=False,
        turn_server=turn_server,
        turn_username=args.turn_username,
        turn_password=args.turn_password,
        transport_policy=TransportPolicy.RELAY if args.relay_only else TransportPolicy.ALL,
    )
    emit({"type": "credentials", "ufrag": connection.local_username, "pwd": connection.local_password})

    loop = asyncio.get_event_loop()
    credentials = asyncio.Event()
    remote_end = asyncio.Event()
    stdin_closed = asyncio.Event()

    async def read_stdin() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            text = line.decode("utf8").strip()
            if text == "":
                continue
            try:
                message = json.loads(text)
                kind = message["type"]
                if kind == "credentials":
                    connection.remote_username = message["ufrag"]
                    connection.remote_password = message["pwd"]
                    credentials.set()
                elif kind == "candidate":
                    sdp = message["sdp"]
                    if sdp.startswith("a="):
                        sdp = sdp[2:]
                    if sdp.startswith("candidate:"):
                        sdp = sdp[len("candidate:"):]
                    await connection.add_remote_candidate(Candidate.from_sdp(sdp))
                elif kind == "end-of-candidates":
                    await connection.add_remote_candidate(None)
                    remote_end.set()
            except Exception as exc:  # report and go on: the test decides
                emit({"type": "error", "message": f"{type(exc).__name__}: {exc} (line {text!r})"})
        stdin_closed.set()

    reader_task = asyncio.ensure_future(read_stdin())

    async def session() -> None:
        await connection.gather_candidates()
        for candidate in connection.local_candidates:
            emit({"type": "candidate", "sdp": candidate.to_sdp()})
        emit({"type": "end-of-candidates"})
        await credentials.wait()
        if not args.trickle:
            await remote_end.wait()
        started = time.monotonic()
        await connection.connect()
        elapsed = (time.monotonic() - started) * 1000
        pair = connection._nominated.get(1)  # aioice keeps the selected pair per component here
        emit({
            "type": "connected",
            "ms": round(elapsed, 1),
            "local": pair.local_candidate.to_sdp() if pair is not None else None,
            "remote": pair.remote_candidate.to_sdp() if pair is not None else None,
            "role": "controlling" if connection.ice_controlling else "controlled",
        })
        await connection.send(args.hello.encode("utf8"))
        prefix = args.prefix.encode("utf8")
        while True:
            data = await connection.recv()
            emit({"type": "data", "hex": data.hex()})
            await connection.send(prefix + data)

    session_task = asyncio.ensure_future(session())
    closed_task = asyncio.ensure_future(stdin_closed.wait())
    try:
        done, _ = await asyncio.wait(
            [session_task, closed_task], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if session_task in done and session_task.exception() is not None:
            exc = session_task.exception()
            emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
            # Stay until stdin closes (the test reads the error first), bounded by the timeout.
            await asyncio.wait([closed_task], timeout=args.timeout)
        elif not done:
            emit({"type": "error", "message": f"timeout after {args.timeout} s"})
            return 3
        return 0
    finally:
        for task in (session_task, closed_task, reader_task):
            task.cancel()
        try:
            await asyncio.wait_for(connection.close(), timeout=5)
        except Exception:
            pass


def main() -> None:
    args = parse_args()
    emit({"type": "version", "version": aioice.__version__})
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
