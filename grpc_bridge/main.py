"""`datatx-bridge`: run the bridge until SIGTERM or SIGINT, then stop gracefully.

Configured by `DATATX_BRIDGE_*` environment variables (see `settings.py`).
"""

from __future__ import annotations

import asyncio
import signal

from grpc_bridge import logs
from grpc_bridge.server import Bridge
from grpc_bridge.settings import BridgeSettings


async def serve(settings: BridgeSettings) -> None:
    bridge = Bridge(settings)
    await bridge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await bridge.stop()


def main() -> None:
    settings = BridgeSettings()
    logs.setup(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
