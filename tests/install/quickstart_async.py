"""AsyncDuctape from an installed wheel: the documented calls as coroutines."""

from __future__ import annotations

import asyncio

from ductape import AsyncDuctape, NotFoundError


async def main() -> None:
    ductape = AsyncDuctape()  # DUCTAPE_ACCESS_KEY, DUCTAPE_URL
    await ductape.init()
    await ductape.secrets.create(key="ASYNC_KEY", value="async-value", envs=["prd"])
    assert (await ductape.secrets.fetch("ASYNC_KEY")).value == "async-value"
    assert any(m.key == "ASYNC_KEY" for m in await ductape.secrets.fetch_all())
    await ductape.secrets.update("ASYNC_KEY", value="async-value-2")
    assert (await ductape.secrets.fetch("ASYNC_KEY")).value == "async-value-2"
    assert await ductape.secrets.delete("ASYNC_KEY") is True
    try:
        await ductape.secrets.fetch("ASYNC_KEY")
    except NotFoundError:
        print("async quickstart: ok")
    else:
        raise SystemExit("a deleted secret was still fetched")


asyncio.run(main())
