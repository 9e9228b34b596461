"""`GET` and `DELETE /conversations/{id}`: read or forget a conversation's stored turns.

The id is the only credential: whoever holds it may read and delete. An unknown id, a malformed
one, and one that was evicted or deleted all get the same 404, so the answer says nothing about
which ids exist.
"""

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.http.deps import ServingDep
from service.http.schemas import ErrorBody

router = APIRouter()

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such conversation."}}


@router.get("/conversations/{conversation_id}", responses=_NOT_FOUND)
async def read_conversation(conversation_id: str, serving: ServingDep) -> JSONResponse:
    return JSONResponse({"conversation_id": conversation_id, "messages": await serving.conversation(conversation_id)})


@router.delete("/conversations/{conversation_id}", status_code=204, responses=_NOT_FOUND)
async def delete_conversation(conversation_id: str, serving: ServingDep) -> Response:
    await serving.forget_conversation(conversation_id)
    return Response(status_code=204)
