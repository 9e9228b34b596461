"""`Conversations`: the service's memory of multi-turn chats, on a conversation store (service/store/).

The store is bounded: in this process (`MemoryConversationStore`, least recently used out first) or
in Redis, shared by every process (a time to live per conversation); both also implement
haystack-experimental's `ChatMessageStore` protocol for pipelines. Here they are awaited on the event
loop (`LoopConversationStore`): nothing blocks it (service/store/conversations.py says how).

Ids are issued by the server, never chosen by the client: an id is the only thing that lets someone
read or delete a conversation, so it is a capability, 192 random bits (`conv_` + 32 URL-safe
characters). A client asks for a new conversation with `"new"`; a well-formed id the service does not
know (evicted, deleted, or from before a restart) also starts a new one, under a fresh id.

Only whole turns are stored: the question and the answer together, once the answer is complete.
Keys are never stored: a turn is two texts.
"""

import re
import secrets
from dataclasses import dataclass, field

from haystack.dataclasses import ChatMessage, ChatRole

from service.store.conversations import LoopConversationStore

NEW = "new"
ID_PATTERN = re.compile(r"conv_[A-Za-z0-9_-]{32}")


@dataclass(frozen=True)
class Conversation:
    id: str
    history: list[dict[str, str]] = field(default_factory=list)  # {"role", "content"}, oldest first

    @property
    def turns(self) -> int:
        return sum(1 for message in self.history if message["role"] == ChatRole.USER.value)


def is_valid_id(value: str) -> bool:
    return value == NEW or ID_PATTERN.fullmatch(value) is not None


class Conversations:
    def __init__(self, store: LoopConversationStore) -> None:
        self.store = store

    async def open(self, requested: str) -> Conversation:
        """The conversation `requested` names, or a new one (for `"new"` or an id not known here)."""
        if requested != NEW:
            stored = await self.store.messages(requested, touch=True)
            if stored is not None:
                return Conversation(requested, _plain(stored))
        conversation_id = "conv_" + secrets.token_urlsafe(24)
        await self.store.create(conversation_id)
        return Conversation(conversation_id)

    async def messages(self, conversation_id: str) -> list[dict[str, str]] | None:
        stored = await self.store.messages(conversation_id)
        return None if stored is None else _plain(stored)

    async def record_turn(self, conversation_id: str, question: str, answer: str) -> bool:
        """Store a completed turn; False if the conversation is gone (deleted or evicted meanwhile)."""
        turn = [ChatMessage.from_user(question), ChatMessage.from_assistant(answer)]
        return await self.store.append_turn(conversation_id, turn)

    async def delete(self, conversation_id: str) -> bool:
        return await self.store.forget(conversation_id)

    async def close(self) -> None:
        await self.store.close()


def _plain(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": message.role.value, "content": message.text or ""} for message in messages]
