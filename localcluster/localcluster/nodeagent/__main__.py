"""`python -m localcluster.nodeagent ...`: started by the launcher, one per cluster."""

from __future__ import annotations

import asyncio
import logging

from localcluster.nodeagent import agent, config

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(agent.main(config.parse()))
