from conftest import receive


async def test_post_reaches_live_reader(service):
    await service.create_blog()
    async with service.live() as ws:
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        entry = await service.post(body="<p>Kyiv: sirens</p>")
        event = await receive(ws)
        assert event["event"] == "entry.created"
        assert event["entry"]["id"] == entry["id"]
