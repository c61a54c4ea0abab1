"""How long one big gRPC message holds a grpc.aio event loop, by message size: what --max-grpc-message-bytes buys.

A bare grpc.aio server (one generic method that takes the raw bytes and answers their length: none of
pixelserve's code) runs in this process beside a task that sleeps 1 ms in a loop and records every gap between
its wake-ups. A client in another process sends --sends messages of each size; the longest gap while they
arrive is how long the loop could not answer anything else (a health probe, another client). grpc.aio turns
each message into one Python bytes object on the loop with the GIL held, so the gap grows with the size.

    python -m bench.message_stall                       # 4, 8, 16, 32 and 64 MiB, 5 sends each
    python -m bench.message_stall --sizes-mib 8 64 --sends 10 --json stall.json

Prints, per size, the longest and the median of the per-send worst gaps in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

METHOD = "/bench.Stall/Send"
CLIENT = """
import sys, grpc
port, size, sends = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", size + 1024)]) as ch:
    send = ch.unary_unary(sys.argv[4])
    payload = bytes(size)
    for _ in range(sends):
        sys.stdin.readline()  # one send per "go": the gap measured is this send's
        send(payload, timeout=60)
        sys.stdout.write("sent\\n")
        sys.stdout.flush()
"""


async def _answer(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return str(len(raw)).encode()


async def measure(sizes_mib: list[int], sends: int) -> dict[int, list[float]]:
    """Per size, the worst loop gap (ms) seen during each send."""
    method = grpc.unary_unary_rpc_method_handler(_answer)
    handler = grpc.method_handlers_generic_handler("bench.Stall", {"Send": method})
    limit = max(sizes_mib) * 1024 * 1024 + 1024
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    worst = 0.0

    async def watch() -> None:
        nonlocal worst
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now

    watcher = asyncio.create_task(watch())
    results: dict[int, list[float]] = {}
    try:
        for size in sizes_mib:
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, str(port), str(size * 1024 * 1024), str(sends), METHOD,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert client.stdin is not None and client.stdout is not None
            gaps = []
            await asyncio.sleep(1.0)  # the client process starting up is not the loop's doing
            for _ in range(sends):
                worst = 0.0
                client.stdin.write(b"go\n")
                await client.stdin.drain()
                await client.stdout.readline()
                gaps.append(worst * 1000)
            await client.wait()
            results[size] = gaps
    finally:
        watcher.cancel()
        await server.stop(None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--sends", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the per-send gaps here")
    args = parser.parse_args()
    results = asyncio.run(measure(args.sizes_mib, args.sends))
    print("| message | longest loop gap ms | median of per-send worst ms |")
    print("|---|---|---|")
    for size, gaps in results.items():
        print(f"| {size} MiB | {max(gaps):.1f} | {statistics.median(gaps):.1f} |")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
