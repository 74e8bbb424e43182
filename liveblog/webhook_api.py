"""The webhooks API (admins only): register, list and remove a blog's webhooks, list their
deliveries and replay one. What is delivered and how is in :mod:`liveblog.deliverer`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import edge
from .errors import ApiError
from .models import StoredDelivery, WebhookCreate, encoder
from .services import services
from .webhook_store import TooMany, WebhookStore
from .webhooks import AllowList, BadUrl, check_url, new_webhook

_WEBHOOK_ID = re.compile(r"^[0-9a-f]{12}\Z")


async def _admin_store(request: Request) -> tuple[WebhookStore, str]:
    principal = await edge.principal(request)
    if not principal.is_admin:
        raise edge.forbid("only admins manage webhooks")
    return services(request).webhooks, edge.blog_id(request)


def _webhook_id(request: Request) -> str:
    return edge.path_id(request, "webhook", _WEBHOOK_ID)


async def create_webhook(request: Request) -> Response:
    """``POST …/webhooks`` ``{"url","events","secret"?}`` → 201, with the secret shown once."""
    hooks, blog_id = await _admin_store(request)
    create = edge.decode(WebhookCreate, await edge.body(request))
    try:
        check_url(create.url, AllowList.parse(services(request).settings.webhook_hosts))
    except BadUrl as exc:
        raise ApiError(422, "bad_url", str(exc), "$.url") from None
    hook, shown = new_webhook(blog_id, create, datetime.now(UTC))
    try:
        await hooks.add(hook)
    except TooMany as exc:
        raise ApiError(409, "too_many_webhooks", f"{exc}; remove one first") from None
    location = f"/api/v1/blogs/{blog_id}/webhooks/{hook.id}"
    return edge.json(encoder.encode(shown), 201, headers={"Location": location, "Cache-Control": "no-store"})


async def list_webhooks(request: Request) -> Response:
    hooks, blog_id = await _admin_store(request)
    await services(request).store.get_blog_json(blog_id)  # 404 for no such blog
    return edge.json(encoder.encode({"webhooks": await hooks.listed(blog_id)}), headers=edge.PRIVATE)


async def delete_webhook(request: Request) -> Response:
    hooks, blog_id = await _admin_store(request)
    await hooks.remove(blog_id, _webhook_id(request))
    if not await hooks.webhooks(blog_id):
        await hooks.forget_blog(blog_id)
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    """``GET …/webhooks/{id}/deliveries?limit=``: its latest deliveries, newest first."""
    hooks, blog_id = await _admin_store(request)
    webhook_id = _webhook_id(request)
    await hooks.get(blog_id, webhook_id)
    limit = edge.int_param(request.query_params, "limit", 50, edge.MAX_PAGE)
    found = await hooks.deliveries(blog_id, webhook_id, limit)
    return edge.json(encoder.encode({"deliveries": found}), headers=edge.PRIVATE)


async def replay_delivery(request: Request) -> Response:
    """``POST …/deliveries/{delivery}/replay``: try it again now (the same event id and body),
    whatever became of it, with a new day of retries. 202 with the delivery."""
    hooks, blog_id = await _admin_store(request)
    webhook_id = _webhook_id(request)
    delivery_id: str = request.path_params["delivery"]
    if not edge.is_record_id(delivery_id):
        raise ApiError(404, "not_found", "no such delivery")
    member = f"{webhook_id} {delivery_id}"
    stored = await hooks.delivery(blog_id, member)
    now = datetime.now(UTC)
    window = services(request).settings.webhook_retry_for
    delivery = msgspec.structs.replace(
        stored.delivery, state="pending", next_attempt_at=now, retry_until=now + timedelta(seconds=window)
    )
    again = StoredDelivery(delivery=delivery, body=stored.body)
    await hooks.record(blog_id, member, again, 0)
    return edge.json(encoder.encode(again.delivery), 202, headers=edge.PRIVATE)


routes = [
    Route("/api/v1/blogs/{blog}/webhooks", list_webhooks, methods=["GET"]),
    Route("/api/v1/blogs/{blog}/webhooks", create_webhook, methods=["POST"]),
    Route("/api/v1/blogs/{blog}/webhooks/{webhook}", delete_webhook, methods=["DELETE"]),
    Route("/api/v1/blogs/{blog}/webhooks/{webhook}/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/v1/blogs/{blog}/webhooks/{webhook}/deliveries/{delivery}/replay", replay_delivery, methods=["POST"]),
]
